//! The paper's architectures (PAPER.md §2), compile-time shaped and generic over the shared activation.
