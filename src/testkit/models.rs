//! CTR models for tests that need a model's answers without ONNX Runtime's
//! (deterministic, so two decisions can be compared).

use crate::scoring::{CtrModel, FEATURES};

/// pCTR from a hash of the row: deterministic, spread over [0.001, 0.5),
/// trained (as it claims) at a base rate of 0.17.
#[derive(Debug, Clone, Copy)]
pub struct Hashed;

impl CtrModel for Hashed {
    fn predict(&mut self, rows: &[[i64; FEATURES]], out: &mut Vec<f32>) -> bool {
        out.clear();
        for r in rows {
            let bytes: Vec<u8> = r.iter().flat_map(|v| v.to_le_bytes()).collect();
            let h = xxhash_rust::xxh3::xxh3_64(&bytes);
            out.push(0.001 + (h % 499) as f32 / 1000.0);
        }
        true
    }
    fn base_rate(&self) -> f64 {
        0.17
    }
}

/// The same pCTR for every row, at a base rate of 0.17 (0.9: CPC bids reach
/// their caps).
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub f32);

impl CtrModel for Fixed {
    fn predict(&mut self, rows: &[[i64; FEATURES]], out: &mut Vec<f32>) -> bool {
        out.clear();
        out.extend(rows.iter().map(|_| self.0));
        true
    }
    fn base_rate(&self) -> f64 {
        0.17
    }
}
