//! Plots and tables for the evcxr notebooks (see notebooks/). Filled in by the notebook work.
