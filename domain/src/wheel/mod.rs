//! The lucky wheel: configuration, provably fair spins and prizes.

pub mod draw;
