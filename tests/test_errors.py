"""cae.errors: any error as one short line (TensorFlow's dumps and stacks cut)."""

from __future__ import annotations

from cae.errors import MAX_LINE, error_line, short_message

PER_REPLICA = """Attempt to convert a value (PerReplica:{
  0: <tf.Tensor: shape=(32, 28, 28, 1), dtype=float32, numpy=
array([[[[0.],
         [0.]]]], dtype=float32)>
}) with an unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>)"""

GRAPH = """Graph execution error:

Detected at node CollectiveReduceV2 defined at (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main

  File "/work/main/cae/training.py", line 882, in train

Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are \
unhealthy (stopped sending heartbeats):
/job:worker/replica:0/task:1
The error could be from a previous operation. Restart your program to reset.
\t [[{{node CollectiveReduceV2}}]] [Op:__inference_multi_step_on_iterator_2047]"""


def test_array_dumps_are_cut():
    line = short_message(PER_REPLICA)
    assert "array(" not in line and "[0.]" not in line and "\\n" not in line
    assert line.startswith("Attempt to convert a value (PerReplica{…}")


def test_graph_stacks_and_node_names_are_cut():
    line = short_message(GRAPH)
    assert line.startswith("Collective ops is aborted by: Error reported from /job:worker/task:1")
    assert "File " not in line and "[[{{node" not in line and "Restart your program" not in line


def test_lines_are_capped():
    line = error_line(RuntimeError("x" * 5000))
    assert len(line) == MAX_LINE and line.endswith("…") and line.startswith("error: RuntimeError: ")
    assert error_line(ValueError("short. Received: x=1"), with_type=False) == (
        "error: short. Received: x=1"
    )


def test_a_capped_line_keeps_the_values_it_received():
    """A 330-character shape message lost its "Received: kernel=(1, 1), strides=(2, 2)" to the cap."""
    message = "encoder[0] conv: " + "words " * 60 + "Received: kernel=(1, 1), strides=(2, 2)"
    line = error_line(ValueError(message), with_type=False)
    assert len(line) <= MAX_LINE
    assert line.startswith("error: encoder[0] conv: words")
    assert line.endswith("… Received: kernel=(1, 1), strides=(2, 2)")
    # a "Received:" tail longer than half the line is cut like any other text
    long_tail = "start " * 40 + "Received: " + "v" * 200
    assert short_message(long_tail).endswith("v…") and len(short_message(long_tail)) == MAX_LINE
