//! Training utilities: the SGD step that keeps frozen activation parameters pinned (PAPER.md §1.4, §3.1).
