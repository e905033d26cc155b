//! The inputs of a campaign: a seeded PRNG and the mutations it drives from
//! valid seeds (bit flips, boundary bytes, truncation, duplicated slices,
//! inserted bytes, huge varints, splices, random buffers).

use super::{DEFAULT_SEED, base_seed};

/// xorshift64*: small, fast and the same on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator for `stream` (a decoder's name) under the campaign's seed:
    /// each decoder sees the same inputs whatever runs before it.
    pub fn for_stream(stream: &str) -> Self {
        let state = base_seed() ^ fnv1a(stream);
        Rng(if state == 0 { DEFAULT_SEED } else { state })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Bytes that sit on boundaries of signed and unsigned encodings.
const INTERESTING_BYTES: [u8; 4] = [0x00, 0xff, 0x7f, 0x80];

/// Varints that claim huge values: `u32::MAX`, `i32::MAX`, `u64::MAX` and an
/// over-long encoding.
const HUGE_VARINTS: [&[u8]; 4] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0x07],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ],
];

/// Inputs never grow past this (mutations stack and duplicate).
const MAX_INPUT_BYTES: usize = 4 << 20;

/// Longest fully random buffer.
const MAX_RANDOM_BYTES: usize = 512;

#[derive(Debug, Clone, Copy)]
enum Mutation {
    FlipBit,
    InterestingByte,
    Truncate,
    DuplicateSlice,
    InsertRandomBytes,
    HugeVarint,
    HugeLengthField,
    Splice,
}

const MUTATIONS: [Mutation; 8] = [
    Mutation::FlipBit,
    Mutation::InterestingByte,
    Mutation::Truncate,
    Mutation::DuplicateSlice,
    Mutation::InsertRandomBytes,
    Mutation::HugeVarint,
    Mutation::HugeLengthField,
    Mutation::Splice,
];

/// Where an input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Seed number `n`, unchanged.
    Seed(usize),
    /// One to four mutations of a seed (or of two, spliced).
    Mutated,
    /// Random bytes.
    Random,
}

pub struct Input {
    pub bytes: Vec<u8>,
    pub origin: Origin,
}

/// Turns valid seed messages into fuzz inputs: first every seed as it is,
/// then mutations of them, and now and then a fully random buffer.
pub struct Mutator {
    rng: Rng,
    seeds: Vec<Vec<u8>>,
}

impl Mutator {
    pub fn new(stream: &str, seeds: Vec<Vec<u8>>) -> Self {
        assert!(!seeds.is_empty(), "{stream}: no seed to mutate");
        Self {
            rng: Rng::for_stream(stream),
            seeds,
        }
    }

    /// Input number `index` of the run.
    pub fn input(&mut self, index: usize) -> Input {
        if let Some(seed) = self.seeds.get(index) {
            return Input {
                bytes: seed.clone(),
                origin: Origin::Seed(index),
            };
        }
        if self.rng.one_in(16) {
            let len = self.rng.below(MAX_RANDOM_BYTES + 1);
            return Input {
                bytes: self.rng.bytes(len),
                origin: Origin::Random,
            };
        }
        let pick = self.rng.below(self.seeds.len());
        let mut bytes = self.seeds[pick].clone();
        for _ in 0..=self.rng.below(4) {
            let mutation = MUTATIONS[self.rng.below(MUTATIONS.len())];
            self.apply(mutation, &mut bytes);
        }
        bytes.truncate(MAX_INPUT_BYTES);
        Input {
            bytes,
            origin: Origin::Mutated,
        }
    }

    fn apply(&mut self, mutation: Mutation, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match mutation {
            Mutation::FlipBit if len > 0 => {
                let at = self.rng.below(len);
                bytes[at] ^= 1 << self.rng.below(8);
            }
            Mutation::InterestingByte if len > 0 => {
                let at = self.rng.below(len);
                bytes[at] = INTERESTING_BYTES[self.rng.below(INTERESTING_BYTES.len())];
            }
            Mutation::Truncate if len > 0 => {
                let keep = self.rng.below(len);
                bytes.truncate(keep);
            }
            Mutation::DuplicateSlice if len > 0 => {
                let start = self.rng.below(len);
                let end = start + 1 + self.rng.below((len - start).min(256));
                let slice = bytes[start..end].to_vec();
                let at = self.rng.below(len + 1);
                insert_at(bytes, at, &slice);
            }
            Mutation::HugeVarint => {
                let varint = HUGE_VARINTS[self.rng.below(HUGE_VARINTS.len())];
                let at = self.rng.below(len + 1);
                if self.rng.one_in(2) {
                    insert_at(bytes, at, varint);
                } else {
                    overwrite_at(bytes, at, varint);
                }
            }
            Mutation::HugeLengthField => {
                // A length-delimited field (wire type 2) claiming 4 GiB.
                let field = 1 + self.rng.below(15) as u8;
                let mut claim = vec![(field << 3) | 2];
                claim.extend_from_slice(HUGE_VARINTS[0]);
                let at = self.rng.below(len + 1);
                insert_at(bytes, at, &claim);
            }
            Mutation::Splice => {
                let pick = self.rng.below(self.seeds.len());
                let other = &self.seeds[pick];
                let cut_here = self.rng.below(len + 1);
                let cut_there = self.rng.below(other.len() + 1);
                bytes.truncate(cut_here);
                bytes.extend_from_slice(&other[cut_there..]);
            }
            // Also what the byte-level mutations do to an empty input.
            _ => {
                let count = 1 + self.rng.below(16);
                let random = self.rng.bytes(count);
                let at = self.rng.below(len + 1);
                insert_at(bytes, at, &random);
            }
        }
    }
}

fn insert_at(bytes: &mut Vec<u8>, at: usize, insert: &[u8]) {
    let tail = bytes.split_off(at);
    bytes.extend_from_slice(insert);
    bytes.extend_from_slice(&tail);
}

fn overwrite_at(bytes: &mut Vec<u8>, at: usize, with: &[u8]) {
    for (offset, byte) in with.iter().enumerate() {
        match bytes.get_mut(at + offset) {
            Some(slot) => *slot = *byte,
            None => bytes.push(*byte),
        }
    }
}
