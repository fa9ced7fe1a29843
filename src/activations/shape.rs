//! Shape properties of an activation (PAPER.md §1.3). Filled in by the activations work.
