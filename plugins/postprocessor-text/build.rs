//! Turns WeTextProcessing's ITN graphs (OpenFst files that `scripts/setup.sh` copies out of
//! PyPI's `wetext` wheel into `.cache/itn/`; `KIKI_ITN_DIR` names another copy) into the flat
//! layout `src/itn/graph.rs` reads in place, so a post-processor call parses nothing.
//!
//! Layout (little-endian): `KFST` `1u32` start, states, arcs (u32 each); then per state its
//! final weight (f32, +inf when not final); then `states + 1` arc offsets (u32); then the arcs
//! (ilabel, olabel: u32; weight: f32; next state: u32), each state's sorted by input label
//! (stable: equal labels keep the file's order).
use std::path::{Path, PathBuf};

use rustfst::Trs;
use rustfst::fst_impls::VectorFst;
use rustfst::fst_traits::{CoreFst, ExpandedFst, SerializableFst};
use rustfst::semirings::{Semiring, TropicalWeight};

const GRAPHS: &[(&str, &str)] = &[
    ("zh/tagger.fst", "zh_tagger.kfst"),
    ("zh/verbalizer.fst", "zh_verbalizer.kfst"),
    ("en/tagger.fst", "en_tagger.kfst"),
    ("en/verbalizer.fst", "en_verbalizer.kfst"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=KIKI_ITN_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = match std::env::var_os("KIKI_ITN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../../.cache/itn"),
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    for (graph, flat) in GRAPHS {
        let path = dir.join(graph);
        assert!(
            path.is_file(),
            "{} is missing: run `make setup` (it copies the ITN graphs out of PyPI's wetext)",
            path.display()
        );
        println!("cargo:rerun-if-changed={}", path.display());
        std::fs::write(out.join(flat), flatten(&path)).expect("OUT_DIR is writable");
    }
    // The grammar's own test cases sit beside the graphs.
    let dir = dir.canonicalize().expect("the ITN directory exists");
    println!("cargo:rustc-env=KIKI_ITN_DIR={}", dir.display());
}

fn flatten(path: &Path) -> Vec<u8> {
    let fst = VectorFst::<TropicalWeight>::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let states = fst.num_states();
    let weight = |w: Option<TropicalWeight>| w.map_or(f32::INFINITY, |w| *w.value());
    let mut finals = Vec::with_capacity(states);
    let mut offsets = vec![0u32];
    let mut arcs = Vec::new();
    for s in 0..states as u32 {
        finals.push(weight(fst.final_weight(s).expect("a state")));
        let mut trs: Vec<_> = fst.get_trs(s).expect("a state").trs().to_vec();
        trs.sort_by_key(|t| t.ilabel);
        for t in trs {
            arcs.push((t.ilabel, t.olabel, *t.weight.value(), t.nextstate));
        }
        offsets.push(u32::try_from(arcs.len()).expect("fewer than 2^32 arcs"));
    }
    let mut out = Vec::with_capacity(20 + states * 8 + arcs.len() * 16);
    out.extend_from_slice(b"KFST");
    let start = fst.start().expect("a start state");
    for n in [1u32, start, states as u32, arcs.len() as u32] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for f in finals {
        out.extend_from_slice(&f.to_le_bytes());
    }
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for (i, o, w, n) in arcs {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&w.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}
