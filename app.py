"""CAE Studio entry point: the navigation (its page list is in ui/nav.py) and the home page (what
the app does, the active design, dataset and run, where to go next).

Imports no TensorFlow, so the first paint is fast.
"""

import threading

import streamlit as st

from cae.shapes import compute_shapes
from cae.text import plain_markdown
from ui.lesson import lesson_section
from ui.nav import app_pages
from ui.state import (
    active_run,
    active_spec,
    dataset_description,
    page_frame,
    run_summary,
    runs_root,
)


def home() -> None:
    """The home page."""
    page_frame("Home")
    st.title("CAE Studio")
    st.markdown(
        "Design, train and explore **convolutional autoencoders** on small images, in your browser. "
        "Every tensor's shape is computed as you type, training shows live progress, and the latent code "
        "can be painted on and decoded on the spot."
    )
    st.markdown(
        ":material/flag: **Start here:** open **Train** and press Train (the classic network on "
        "the bundled digits; it says how long it will take), then paint its code in the "
        "**Latent Editor**."
    )

    spec = active_spec()
    left, middle, right = st.columns(3)
    if spec is not None:
        try:
            report = compute_shapes(spec)
        except ValueError as error:
            left.metric("Design", plain_markdown(spec.name))  # a metric value is markdown
            left.caption(f":orange[{plain_markdown(str(error))}]")
        else:
            left.metric(
                "Design", plain_markdown(spec.name), help="The architecture you are working on"
            )
            middle.metric(
                "Latent code",
                "x".join(str(n) for n in report.latent_shape),
                f"{report.compression_ratio:.1f}x compression",
                delta_color="off",
                delta_arrow="off",  # a ratio, not a change: an up-arrow read as "grew"
            )
            right.metric("Parameters", f"{report.total_params:,}")
            if not report.matches:
                st.warning(report.problem, icon=":material/warning:")
    st.caption(f"Dataset: {dataset_description()}.")
    run = active_run()
    if run is not None:
        st.markdown(
            f"Active run: {run_summary(run)} — compare it on **Results**, paint its code in the "
            "**Latent Editor**."
        )
    else:
        st.markdown("No trained run yet: design a network, then train it on the **Train** page.")
    st.caption(
        "What you train, upload and sweep is kept in this browser's workspace, seen by its tabs "
        "only, beside the gallery of shared runs that everyone sees; **New workspace** in the "
        "sidebar starts an empty one (for the next person at this computer)."
    )

    # one row that wraps, each link as wide as its label (six equal columns cut the longer ones)
    with st.container(horizontal=True, gap="medium", key="home_links"):
        st.page_link(
            "pages/1_Architecture.py", label="Design the network", icon=":material/account_tree:"
        )
        st.page_link("pages/2_Train.py", label="Train it", icon=":material/model_training:")
        st.page_link("pages/3_Results.py", label="Compare results", icon=":material/insights:")
        st.page_link(
            "pages/4_Latent_Editor.py", label="Edit the latent code", icon=":material/brush:"
        )
        st.page_link("pages/5_Inspect.py", label="Look inside", icon=":material/biotech:")
        st.page_link("pages/6_Experiments.py", label="Sweep designs", icon=":material/science:")

    st.subheader("How it works")
    st.markdown(
        """
    1. **Design** the network: filters, kernel sizes (non-square too), strides, padding, pooling,
       up-sampling or transposed convolution. Shapes, parameter counts and the formulas behind them
       update at once; a decoder that does not come back to the input shape gets a one-click fix.
    2. **Train** it on MNIST, Fashion-MNIST or your own images, with live loss curves and
       reconstructions, and stop whenever you like.
    3. **Compare** runs: original-versus-reconstructed grids, error maps, MSE, PSNR and SSIM.
    4. **Edit the latent code**: paint on the 7x7 code of the classic network or type numbers,
       and watch it decoded in place.
    5. **Look inside**: every layer's feature maps, the learned kernels, the map of the codes, and
       one convolution worked out by hand with your network's own numbers.
    6. **Experiment**: vary filters, kernels, the code's size or training settings over lists of
       values, train every combination, and see them on one chart against PCA; or let its
       **Search** (Optuna) try designs for you and find the ones that beat PCA with the same code.
    """
    )

    # the seed's network against the wide preset and PCA, from the two shipped runs (issue 27)
    lesson_section(runs_root())

    st.subheader("Start from the command line too")
    st.code(
        "python -m cae shapes --preset classic        # the shape table of the classic network\n"
        "python -m cae shapes --spec my_net.json --keras   # Keras's own shapes for your design\n"
        "python -m cae train --preset classic --dataset mnist-sample --epochs 10 --out models/my-run\n"
        "python -m cae sweep --preset classic --dataset mnist-sample --epochs 5 \\\n"
        "    --vary encoder.0.filters=8,16 --vary code=1,2 --out-dir sweeps/first\n"
        "python -m cae list                           # every run with its test PSNR",
        language="bash",
    )


@st.cache_resource(show_spinner=False)
def restore_queue_once() -> bool:
    """Once per server, in a thread (its imports take ~1 s, not the first paint's): what the
    queue held before a restart waits again, what ran is recorded as interrupted."""

    def restore() -> None:
        from cae.studies import restore_queue

        restore_queue()  # trainings requeued; active studies go on, interrupted trials told failed

    threading.Thread(target=restore, name="cae-restore-queue", daemon=True).start()
    return True


restore_queue_once()
st.navigation(app_pages(home)).run()
