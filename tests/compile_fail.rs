//! Shape errors are compile errors (src/ops/shapes.rs): a layer or op whose input does not fit
//! has no impl. Each file in `tests/compile_fail/` must fail to compile with the type error
//! recorded in its `.stderr` (regenerate with `TRYBUILD=overwrite cargo test --test
//! compile_fail`, then check the new `.stderr` still names the shape mismatch). The well-shaped
//! counterparts compile and run in `tests/ops.rs` (`well_shaped_layers_compile_and_chain`).

#[test]
fn misshaped_models_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
