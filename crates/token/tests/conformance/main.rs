//! Writ's token conformance suite, one test binary: the attacks of the developers' security
//! checklist (SECURITY.md, items 1-11 and 23-24), the Project Wycheproof vectors for every JWT algorithm Writ accepts,
//! and the Biscuit specification samples run through Writ's own Biscuit code path.
//!
//! The vectors are vendored in `tests/vectors/` (with their licenses, see its README); when one
//! is missing the suite fails and says where it looked, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod biscuit_samples;
mod support;
mod wycheproof;
