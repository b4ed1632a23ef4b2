//! A weighted transducer read in place from the flat layout `build.rs` writes, and the one
//! operation ITN needs: the output of the best path that reads a given byte string.
//!
//! Written here rather than run through an FST library at call time: the host runs every
//! post-processor call in a fresh instance, and with `rustfst` each call parsed both graphs
//! (about 12 ms natively) and composed through its generic lazy machinery (9 ms for a
//! 38-character sentence), and ran out of the call's fuel in the sandbox. Reading the arcs
//! where they lie and searching only the pairs (input position, state) the input reaches takes
//! 0.4 ms natively for the same sentence, 2.8 ms in the sandbox (`cargo bench --bench plugins`).
//!
//! The search is OpenFst's, step for step, because equal-weight paths are common in these
//! grammars (两点零二分 reads as a time or as a measure at the same weight) and the grammar's
//! expected outputs follow OpenFst's choice: the input's chain composed with the graph (arcs in
//! the composition's order), a depth-first walk for the topological order, then the single
//! shortest path relaxing in that order and keeping the first of equal distances.

use rustc_hash::FxHashMap as HashMap;

pub struct Graph {
    bytes: &'static [u8],
    start: u32,
    states: u32,
    finals: usize,
    offsets: usize,
    arcs: usize,
}

#[derive(Clone, Copy)]
struct Arc {
    ilabel: u32,
    olabel: u32,
    weight: f32,
    next: u32,
}

/// Lattice nodes one search may make (60 to 100 bytes each, growth included): the Chinese
/// tagger makes about 100 per input byte, so a piece of [`super::MAX_PIECE_BYTES`] takes about
/// 4 MiB of the plugin's 16 MiB (which also hold the 4.5 MB of graphs). Past it the search
/// gives up and the piece is left as it was.
const MAX_NODES: usize = 80_000;

impl Graph {
    /// Reads the header of a flat graph; `None` when the bytes are not one.
    pub fn new(bytes: &'static [u8]) -> Option<Graph> {
        if bytes.get(..4)? != b"KFST" {
            return None;
        }
        let word = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let (version, start, states, arcs) = (word(4)?, word(8)?, word(12)?, word(16)?);
        let finals = 20;
        let offsets = finals + 4 * states as usize;
        let arcs_at = offsets + 4 * (states as usize + 1);
        (version == 1 && start < states && bytes.len() == arcs_at + 16 * arcs as usize).then_some(Graph {
            bytes,
            start,
            states,
            finals,
            offsets,
            arcs: arcs_at,
        })
    }

    fn word(&self, at: usize) -> u32 {
        let b = &self.bytes[at..at + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn final_weight(&self, state: u32) -> f32 {
        f32::from_bits(self.word(self.finals + 4 * state as usize))
    }

    /// Arc `i` of the graph.
    fn arc(&self, i: usize) -> Arc {
        let at = self.arcs + 16 * i;
        Arc {
            ilabel: self.word(at),
            olabel: self.word(at + 4),
            weight: f32::from_bits(self.word(at + 8)),
            next: self.word(at + 12),
        }
    }

    /// The arcs of `state` that read `label`. States have three arcs on average: a scan finds
    /// the first; a binary search where there are many.
    fn arcs_reading(&self, state: u32, label: u32) -> impl Iterator<Item = Arc> + '_ {
        let from = self.word(self.offsets + 4 * state as usize) as usize;
        let to = self.word(self.offsets + 4 * (state as usize + 1)) as usize;
        let ilabel = |i: usize| self.word(self.arcs + 16 * i);
        let (mut lo, mut hi) = (from, to);
        if to - from <= 8 {
            while lo < to && ilabel(lo) < label {
                lo += 1;
            }
        } else {
            while lo < hi {
                let mid = (lo + hi) / 2;
                if ilabel(mid) < label {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        (lo..to).map(move |i| self.arc(i)).take_while(move |a| a.ilabel == label)
    }

    /// The output of the best path reading `input`; `None` when no path reads it, or the graph
    /// is broken (an arc to a state it does not have, output that is not a byte) or loops on
    /// input epsilons (the shipped graphs do not).
    pub fn best_output(&self, input: &[u8]) -> Option<Vec<u8>> {
        let lattice = Lattice::build(self, input)?;
        lattice.best_output(self, input.len() as u32)
    }
}

/// A (position, state) pair of the input's chain composed with the graph, with its arcs in the
/// order OpenFst's composition gives them: the graph's input-epsilon arcs first, then those
/// reading the byte at the position, each group in the graph's order.
struct Node {
    position: u32,
    state: u32,
    /// Its arcs: `Lattice::arcs[from..to]`.
    from: u32,
    to: u32,
}

/// An arc of the lattice: the node it leads to, the byte it writes (0: none), its weight.
#[derive(Clone, Copy)]
struct Step {
    to: u32,
    output: u8,
    weight: f32,
}

/// The part of the composition reachable from the start, its nodes in topological order.
struct Lattice {
    nodes: Vec<Node>,
    arcs: Vec<Step>,
    order: Vec<u32>,
}

impl Lattice {
    /// A depth-first walk from the start, arcs in order, as OpenFst's `DfsVisit` makes it; the
    /// reverse of the order in which nodes finish is the topological order its `TopOrderQueue`
    /// follows. `None` on a cycle (or a broken graph), or past the size bound.
    fn build(graph: &Graph, input: &[u8]) -> Option<Lattice> {
        let mut lattice = Lattice { nodes: Vec::new(), arcs: Vec::new(), order: Vec::new() };
        let mut ids: HashMap<(u32, u32), u32> = HashMap::default();
        let start = lattice.intern(&mut ids, 0, graph.start);
        lattice.expand(graph, input, &mut ids, start)?;
        // 0: not seen, 1: on the stack, 2: finished.
        let mut colour: Vec<u8> = vec![0; lattice.nodes.len()];
        colour[start as usize] = 1;
        // (node, its next arc to walk)
        let mut stack: Vec<(u32, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let Node { from, to, .. } = lattice.nodes[node as usize];
            let Some(child) = (from as usize + next < to as usize).then(|| lattice.arcs[from as usize + next].to)
            else {
                colour[node as usize] = 2;
                lattice.order.push(node);
                stack.pop();
                continue;
            };
            top.1 += 1;
            // Every child was interned by its parent's expansion, after which `colour` grew.
            match colour[child as usize] {
                0 => {
                    lattice.expand(graph, input, &mut ids, child)?;
                    if lattice.nodes.len() > MAX_NODES {
                        return None;
                    }
                    colour.resize(lattice.nodes.len(), 0);
                    colour[child as usize] = 1;
                    stack.push((child, 0));
                }
                1 => return None,
                _ => {}
            }
        }
        lattice.order.reverse();
        Some(lattice)
    }

    fn intern(&mut self, ids: &mut HashMap<(u32, u32), u32>, position: u32, state: u32) -> u32 {
        *ids.entry((position, state)).or_insert_with(|| {
            self.nodes.push(Node { position, state, from: 0, to: 0 });
            (self.nodes.len() - 1) as u32
        })
    }

    /// Gives `node` its arcs: the graph's input-epsilon arcs, then those reading the next byte.
    fn expand(&mut self, graph: &Graph, input: &[u8], ids: &mut HashMap<(u32, u32), u32>, node: u32) -> Option<()> {
        let Node { position, state, .. } = self.nodes[node as usize];
        let next_byte = input.get(position as usize).map(|&b| (u32::from(b), position + 1));
        let from = self.arcs.len() as u32;
        for (label, to) in std::iter::once((0, position)).chain(next_byte) {
            for arc in graph.arcs_reading(state, label) {
                if arc.next >= graph.states {
                    return None;
                }
                let output = u8::try_from(arc.olabel).ok()?;
                let to = self.intern(ids, to, arc.next);
                self.arcs.push(Step { to, output, weight: arc.weight });
            }
        }
        let node = &mut self.nodes[node as usize];
        (node.from, node.to) = (from, self.arcs.len() as u32);
        Some(())
    }

    /// OpenFst's single shortest path: nodes in topological order, each arc relaxed in order,
    /// a distance (and the final choice) replaced only by a strictly smaller one, so that
    /// equal-weight paths resolve as `fst::ShortestPath` resolves them.
    fn best_output(&self, graph: &Graph, end: u32) -> Option<Vec<u8>> {
        let mut distance = vec![f32::INFINITY; self.nodes.len()];
        let mut parent: Vec<Option<(u32, u8)>> = vec![None; self.nodes.len()];
        let (mut best, mut best_final) = (f32::INFINITY, None);
        let start = *self.order.first()?;
        distance[start as usize] = 0.0;
        for &n in &self.order {
            let d = distance[n as usize];
            if !d.is_finite() {
                continue;
            }
            let node = &self.nodes[n as usize];
            if node.position == end {
                let f = d + graph.final_weight(node.state);
                if f < best {
                    (best, best_final) = (f, Some(n));
                }
            }
            for step in &self.arcs[node.from as usize..node.to as usize] {
                let nd = d + step.weight;
                if nd < distance[step.to as usize] {
                    distance[step.to as usize] = nd;
                    parent[step.to as usize] = Some((n, step.output));
                }
            }
        }
        let mut at = best_final?;
        let mut out = Vec::new();
        for _ in 0..=self.nodes.len() {
            match parent[at as usize] {
                Some((from, byte)) => {
                    if byte != 0 {
                        out.push(byte);
                    }
                    at = from;
                }
                None => {
                    out.reverse();
                    return Some(out);
                }
            }
        }
        None
    }
}
