//! Robust statistics used across the project.

/// Median of the finite values (consumes their order); None if none.
pub fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    Some(*values.select_nth_unstable_by(mid, f32::total_cmp).1)
}

/// Robust standard deviation: 1.4826 × the median absolute deviation from
/// the median (σ for Gaussian noise). Reorders and overwrites `values`;
/// None for an empty slice. Callers drop non-finite values first.
pub fn mad_sigma(values: &mut [f32]) -> Option<f32> {
    let m = median(values)?;
    for v in values.iter_mut() {
        *v = (*v - m).abs();
    }
    median(values).map(|d| 1.4826 * d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mad_of_a_known_sample() {
        // median 3, absolute deviations 2,1,0,1,2 → MAD 1
        assert!((super::mad_sigma(&mut [1.0, 2.0, 3.0, 4.0, 5.0]).unwrap() - 1.4826).abs() < 1e-6);
        assert_eq!(super::median(&mut []), None);
    }
}
