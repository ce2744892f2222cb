"""Streamlit helpers shared by the pages: session-state keys, page set-up, the sidebar.

Only plain data lives in ``st.session_state`` (spec dicts, run ids, names); never Keras objects.
"""
