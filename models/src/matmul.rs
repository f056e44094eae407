//! One single-threaded matrix product over strided f32 slices (gemm's kernels,
//! chosen at run time for the CPU): the embedder's fused layers and k-means'
//! assignment step both call it from their own rayon workers.

use gemm::Parallelism;

/// `dst = scale · a·b`, or `dst += scale · a·b` if `accumulate`, on this thread:
/// `a` is m×k with rows `a_rs` apart, `dst` m×n with rows `dst_rs` apart, and `b`
/// k×n with element (r, c) at `r·b_rs + c·b_cs` — so a transpose is a swap of strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &[f32],
    a_rs: usize,
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + n, "matmul: dst too short");
    assert!(
        k == 0 || a.len() >= (m - 1) * a_rs + k,
        "matmul: a too short"
    );
    assert!(
        k == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs,
        "matmul: b too short"
    );
    // SAFETY: the asserts above keep every index gemm forms (row·rs + col·cs for
    // rows < m or k and columns < n or k) inside the three slices, and `dst` is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            1,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}
