//! The provably fair draw, pure and recomputable by anyone:
//!
//! 1. `digest = HMAC-SHA256(key = serverSeed bytes, message = "{clientSeed}:{nonce}")`; when more
//!    randomness is needed, the messages `"{clientSeed}:{nonce}:1"`, `":2"`, … follow.
//! 2. Read each digest as four big-endian `u64`s. With `W` the total weight of the segments in
//!    the draw, take the first value `v < 2^64 − (2^64 mod W)` (rejection: no modulo bias).
//! 3. `r = v mod W`; the winner is the first segment (in position order) whose cumulative
//!    weight exceeds `r`.
//!
//! The commitment shown before a spin is `sha256(serverSeed bytes)`, hex.

use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a server seed.
pub const SEED_BYTES: usize = 32;

/// `sha256(seed)`, hex: what a member sees before spinning.
pub fn commitment(server_seed: &[u8]) -> String {
    hex::encode(Sha256::digest(server_seed))
}

fn digest(server_seed: &[u8], client_seed: &str, nonce: u64, round: u64) -> [u8; 32] {
    let message = if round == 0 {
        format!("{client_seed}:{nonce}")
    } else {
        format!("{client_seed}:{nonce}:{round}")
    };
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(server_seed) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A uniform value in `0..total` derived from the seeds (`None` when `total` is 0).
pub fn roll(server_seed: &[u8], client_seed: &str, nonce: u64, total: u64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let zone = u64::MAX - (u64::MAX % total + 1) % total;
    // Each round rejects with probability < total / 2^64; 64 rounds never all fail in practice.
    for round in 0..64 {
        let bytes = digest(server_seed, client_seed, nonce, round);
        for chunk in bytes.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let value = u64::from_be_bytes(word);
            if value <= zone {
                return Some(value % total);
            }
        }
    }
    None
}

/// The index of the winning weight.
pub fn pick(weights: &[u64], server_seed: &[u8], client_seed: &str, nonce: u64) -> Option<usize> {
    let total = weights
        .iter()
        .try_fold(0u64, |sum, w| sum.checked_add(*w))?;
    let r = roll(server_seed, client_seed, nonce, total)?;
    let mut cumulative = 0u64;
    weights.iter().position(|w| {
        cumulative += w;
        r < cumulative
    })
}

/// Odds `weight ÷ total` to 10 fraction digits, largest remainders rounded up so they sum to
/// exactly 1 (exact whenever the fraction terminates within 10 digits).
pub fn probabilities(weights: &[u64]) -> Vec<Decimal> {
    const SCALE: u128 = 10_000_000_000;
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return vec![Decimal::ZERO; weights.len()];
    }
    let mut units: Vec<(u128, u128, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let scaled = u128::from(*w) * SCALE;
            (scaled / total, scaled % total, i)
        })
        .collect();
    let assigned: u128 = units.iter().map(|(q, _, _)| q).sum();
    let mut missing = SCALE - assigned;
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|a, b| units[*b].1.cmp(&units[*a].1).then(a.cmp(b)));
    for i in order {
        if missing == 0 {
            break;
        }
        if units[i].1 > 0 {
            units[i].0 += 1;
            missing -= 1;
        }
    }
    units
        .into_iter()
        .map(|(q, _, _)| {
            Decimal::from_i128_with_scale(i128::try_from(q).unwrap_or(0), 10).normalize()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recomputing_gives_the_same_segment_and_the_seed_matches_its_commitment() {
        let seed = [7u8; SEED_BYTES];
        let weights = [5, 1, 3, 1];
        let first = pick(&weights, &seed, "my-lucky-seed", 42);
        assert_eq!(first, pick(&weights, &seed, "my-lucky-seed", 42));
        assert_eq!(commitment(&seed), hex::encode(Sha256::digest(seed)));
        assert_ne!(
            (0..50)
                .map(|n| pick(&weights, &seed, "x", n))
                .collect::<Vec<_>>(),
            vec![first; 50],
        );
    }

    #[test]
    fn the_digest_is_standard_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Our message format for round 0 is exactly "clientSeed:nonce".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?:0");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(
            digest(b"Jefe", "what do ya want for nothing?", 0, 0),
            expected
        );
    }

    #[test]
    fn probabilities_are_exact_and_sum_to_one() {
        let p = probabilities(&[1, 2, 3, 4]);
        assert_eq!(
            p,
            ["0.1", "0.2", "0.3", "0.4"].map(|s| s.parse::<Decimal>().unwrap())
        );
        let thirds = probabilities(&[1, 1, 1]);
        assert_eq!(thirds.iter().sum::<Decimal>(), Decimal::ONE);
        assert_eq!(probabilities(&[]), Vec::<Decimal>::new());
    }

    #[test]
    fn edge_weights() {
        let seed = [1u8; SEED_BYTES];
        assert_eq!(pick(&[], &seed, "c", 0), None);
        assert_eq!(pick(&[0, 0], &seed, "c", 0), None);
        assert_eq!(pick(&[0, 9], &seed, "c", 0), Some(1));
        assert!(pick(&[u64::MAX / 2, u64::MAX / 2], &seed, "c", 0).is_some());
    }

    /// ≥ 100,000 draws through `pick` fit the weights: chi-square at α = 0.01.
    #[test]
    fn draws_follow_the_weights_chi_square() {
        let weights = [1u64, 2, 3, 4, 10, 7];
        let total: u64 = weights.iter().sum();
        let draws = 120_000u64;
        let mut counts = [0u64; 6];
        let mut seed = [0u8; SEED_BYTES];
        for n in 0..draws {
            // A fresh server seed per spin, as in production (here derived, for repeatability).
            seed[..8].copy_from_slice(&n.to_be_bytes());
            let i = pick(&weights, &seed, "client-seed", n).unwrap();
            counts[i] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(weights)
            .map(|(&observed, w)| {
                let expected = draws as f64 * w as f64 / total as f64;
                (observed as f64 - expected).powi(2) / expected
            })
            .sum();
        // Critical value of chi-square with 5 degrees of freedom at α = 0.01.
        assert!(chi2 < 15.086, "chi-square {chi2:.3} with counts {counts:?}");
    }
}
