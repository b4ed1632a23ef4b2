//! Token search over decoder rows: greedy, sampling at a temperature (best of N), and beam
//! search, each as Whisper does it. Pure logic over logits, so it is tested without a model.
//!
//! Every item (one audio window) owns `k` consecutive decoder rows: 1 for greedy, N for
//! best-of-N sampling, the beam width for beam search. After each step the search says which
//! row each row continues (`sources`; beams reorder, others keep their own) and which token it
//! feeds next.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// How to pick tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Greedy,
    /// Sample from softmax(logits / temperature), `best_of` independent rows per item.
    Sample {
        temperature: f32,
        best_of: usize,
    },
    /// Beam search; an item ends once `round(size * patience)` finished candidates exist.
    Beam {
        size: usize,
        patience: f32,
    },
}

impl Mode {
    /// Decoder rows per item.
    pub fn rows(&self) -> usize {
        match *self {
            Mode::Greedy => 1,
            Mode::Sample { best_of, .. } => best_of.max(1),
            Mode::Beam { size, .. } => size.max(1),
        }
    }
}

/// One finished hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Text tokens, without the final end-of-text.
    pub tokens: Vec<u32>,
    /// Sum of the log-probabilities of the tokens and of the end-of-text.
    pub sum_logprob: f32,
}

impl Candidate {
    /// Whisper's average log-probability: over the tokens plus the end-of-text.
    pub fn avg_logprob(&self) -> f32 {
        self.sum_logprob / (self.tokens.len() + 1) as f32
    }

    /// Whisper's ranking score: the log-probability over the length, or over the
    /// Google NMT length penalty `((5 + len) / 6) ^ alpha` when one is given.
    fn score(&self, length_penalty: Option<f32>) -> f32 {
        let len = self.tokens.len().max(1) as f32;
        let penalty = match length_penalty {
            Some(alpha) => ((5.0 + len) / 6.0).powf(alpha),
            None => len,
        };
        self.sum_logprob / penalty
    }
}

/// The next decoder step: row `i` continues row `sources[i]` and is fed `tokens[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub sources: Vec<usize>,
    pub tokens: Vec<u32>,
}

impl Advance {
    /// True when no row changes places (the decoder cache can be used as it is).
    #[cfg(test)]
    pub fn in_place(&self) -> bool {
        self.sources.iter().enumerate().all(|(i, &s)| i == s)
    }
}

pub struct Search {
    mode: Mode,
    k: usize,
    eot: u32,
    max_len: usize,
    length_penalty: Option<f32>,
    /// Per row: tokens so far, summed log-probability, finished.
    seqs: Vec<Vec<u32>>,
    sums: Vec<f32>,
    row_done: Vec<bool>,
    /// Per item: finished candidates, and whether the item is complete.
    finished: Vec<Vec<Candidate>>,
    item_done: Vec<bool>,
    steps: usize,
    rng: StdRng,
}

impl Search {
    /// A search over `items` windows; `max_len` bounds the text tokens.
    pub fn new(mode: Mode, items: usize, eot: u32, max_len: usize, length_penalty: Option<f32>, seed: u64) -> Self {
        let k = mode.rows();
        let rows = items * k;
        Self {
            mode,
            k,
            eot,
            max_len,
            length_penalty,
            seqs: vec![Vec::new(); rows],
            sums: vec![0.0; rows],
            row_done: vec![false; rows],
            finished: vec![Vec::new(); items],
            item_done: vec![false; items],
            steps: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn rows(&self) -> usize {
        self.seqs.len()
    }

    /// True once `item` has its result (its rows may still be fed; their logits are ignored).
    pub fn item_done(&self, item: usize) -> bool {
        self.item_done[item]
    }

    pub fn done(&self) -> bool {
        self.item_done.iter().all(|&d| d)
    }

    /// Takes one step from the suppressed logits of every row (`rows * vocab`, row-major).
    pub fn advance(&mut self, logits: &[f32], vocab: usize) -> Advance {
        let rows = self.rows();
        let mut adv = Advance { sources: (0..rows).collect(), tokens: vec![self.eot; rows] };
        let last_step = self.steps + 1 >= self.max_len;
        for item in 0..self.item_done.len() {
            if self.item_done[item] {
                continue;
            }
            let range = item * self.k..(item + 1) * self.k;
            match self.mode {
                Mode::Beam { size, patience } => {
                    self.beam_item(item, logits, vocab, size, patience, &mut adv);
                }
                Mode::Greedy | Mode::Sample { .. } => {
                    for row in range.clone() {
                        if self.row_done[row] {
                            continue;
                        }
                        let logits = &logits[row * vocab..(row + 1) * vocab];
                        let token = match self.mode {
                            Mode::Sample { temperature, .. } if temperature > 0.0 => {
                                sample(logits, temperature, &mut self.rng)
                            }
                            _ => argmax(logits),
                        };
                        self.sums[row] += log_softmax_at(logits, token);
                        adv.tokens[row] = token as u32;
                        if token as u32 == self.eot {
                            self.row_done[row] = true;
                        } else {
                            self.seqs[row].push(token as u32);
                            // A row stuck in a loop would hold its whole batch to the length
                            // bound; its text fails the compression check anyway.
                            if is_looping(&self.seqs[row]) {
                                self.row_done[row] = true;
                            }
                        }
                    }
                    if range.clone().all(|r| self.row_done[r]) {
                        self.item_done[item] = true;
                    }
                }
            }
            if last_step && !self.item_done[item] {
                self.close_item(item);
            }
        }
        self.steps += 1;
        adv
    }

    /// One beam-search step for one item (Whisper's `BeamSearchDecoder.update`).
    fn beam_item(&mut self, item: usize, logits: &[f32], vocab: usize, size: usize, patience: f32, adv: &mut Advance) {
        let base = item * self.k;
        // At the first step every beam holds the same prompt: expand one of them only.
        let live = if self.steps == 0 { 1 } else { self.k };
        let mut cands: Vec<(f32, usize, u32)> = Vec::new();
        for row in base..base + live {
            if is_looping(&self.seqs[row]) {
                // A looping beam ends here, as it stands.
                let c = Candidate { tokens: self.seqs[row].clone(), sum_logprob: self.sums[row] };
                self.finished[item].push(c);
                continue;
            }
            let row_logits = &logits[row * vocab..(row + 1) * vocab];
            let lse = log_sum_exp(row_logits);
            for t in top_k(row_logits, size + 1) {
                cands.push((self.sums[row] + row_logits[t] - lse, row, t as u32));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let max_finished = ((size as f32 * patience).round() as usize).max(1);
        let mut next: Vec<(f32, usize, u32)> = Vec::with_capacity(self.k);
        for c in cands {
            if c.2 == self.eot {
                if self.finished[item].len() < max_finished {
                    self.finished[item].push(Candidate { tokens: self.seqs[c.1].clone(), sum_logprob: c.0 });
                }
            } else {
                next.push(c);
                if next.len() == self.k {
                    break;
                }
            }
        }
        if self.finished[item].len() >= max_finished || next.is_empty() {
            self.item_done[item] = true;
            return;
        }
        // Fewer continuations than beams (only when the vocabulary is tiny): repeat the best.
        while next.len() < self.k {
            next.push(next[0]);
        }
        let old: Vec<Vec<u32>> = self.seqs[base..base + self.k].to_vec();
        for (j, (score, src, token)) in next.into_iter().enumerate() {
            let row = base + j;
            let mut seq = old[src - base].clone();
            seq.push(token);
            self.seqs[row] = seq;
            self.sums[row] = score;
            adv.sources[row] = src;
            adv.tokens[row] = token;
        }
    }

    /// The length bound was reached: what is in the rows is final.
    fn close_item(&mut self, item: usize) {
        let range = item * self.k..(item + 1) * self.k;
        if matches!(self.mode, Mode::Beam { .. }) {
            let mut rows: Vec<usize> = range.collect();
            rows.sort_by(|&a, &b| self.sums[b].total_cmp(&self.sums[a]));
            for row in rows.into_iter().take(self.k.saturating_sub(self.finished[item].len())) {
                self.finished[item].push(Candidate { tokens: self.seqs[row].clone(), sum_logprob: self.sums[row] });
            }
        }
        for row in item * self.k..(item + 1) * self.k {
            self.row_done[row] = true;
        }
        self.item_done[item] = true;
    }

    /// The best candidate of every item.
    pub fn finish(mut self) -> Vec<Candidate> {
        let items = self.item_done.len();
        (0..items)
            .map(|item| {
                let mut cands = std::mem::take(&mut self.finished[item]);
                if !matches!(self.mode, Mode::Beam { .. }) {
                    cands = (item * self.k..(item + 1) * self.k)
                        .map(|row| Candidate {
                            tokens: std::mem::take(&mut self.seqs[row]),
                            sum_logprob: self.sums[row],
                        })
                        .collect();
                }
                let lp = self.length_penalty;
                cands
                    .into_iter()
                    .max_by(|a, b| a.score(lp).total_cmp(&b.score(lp)))
                    .unwrap_or(Candidate { tokens: Vec::new(), sum_logprob: 0.0 })
            })
            .collect()
    }
}

/// True when the sequence ends in the same n-gram repeated back to back: one token 8 times,
/// n = 2..=4 five times, longer n-grams (up to 32 tokens: a whole sentence, which is how tiny.en
/// loops on a segment cut mid-word) until they span 30 tokens, at least 3 times. Whisper's
/// repetition failure, not speech; caught before it runs to the length bound.
pub fn is_looping(tokens: &[u32]) -> bool {
    (1..=32).any(|n| {
        let reps = match n {
            1 => 8,
            2..=4 => 5,
            _ => 30usize.div_ceil(n).max(3),
        };
        tokens.len() >= n * reps && {
            let tail = &tokens[tokens.len() - n..];
            (1..reps).all(|r| &tokens[tokens.len() - n * (r + 1)..tokens.len() - n * r] == tail)
        }
    })
}

pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

pub fn log_softmax_at(row: &[f32], idx: usize) -> f32 {
    row[idx] - log_sum_exp(row)
}

pub fn softmax_at(row: &[f32], idx: usize) -> f32 {
    row.get(idx).map(|v| (v - log_sum_exp(row)).exp()).unwrap_or(0.0)
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Indices of the `k` largest values, largest first.
fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut top: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        if v == f32::NEG_INFINITY || (top.len() == k && v <= row[top[k - 1]]) {
            continue;
        }
        let at = top.partition_point(|&j| row[j] >= v);
        top.insert(at, i);
        top.truncate(k);
    }
    top
}

fn sample(row: &[f32], temperature: f32, rng: &mut StdRng) -> usize {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = row.iter().map(|v| ((v - max) / temperature).exp()).collect();
    let total: f32 = weights.iter().sum();
    let mut x = rng.random::<f32>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    argmax(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EOT: u32 = 4;

    /// A "model" over 5 tokens whose next-token logits depend only on the step.
    fn logits_for(step: usize, rows: usize, table: &[[f32; 5]]) -> Vec<f32> {
        let row = table[step.min(table.len() - 1)];
        (0..rows).flat_map(|_| row).collect()
    }

    #[test]
    fn loops_are_detected_and_speech_is_not() {
        assert!(is_looping(&[7; 8]));
        assert!(!is_looping(&[7; 7]));
        let phrase = [1, 2, 3, 4, 5, 6];
        let looped: Vec<u32> = phrase.iter().cycle().take(30).copied().collect();
        assert!(is_looping(&looped));
        assert!(!is_looping(&(0..200).collect::<Vec<u32>>()));
        assert!(!is_looping(&[5, 9, 5, 9, 5, 9, 5, 9, 1]));
        // A sentence of 11 tokens said three times over is a loop; twice is not.
        let sentence: Vec<u32> = (100..111).collect();
        let thrice: Vec<u32> = [&[1, 2][..], &sentence, &sentence, &sentence].concat();
        assert!(is_looping(&thrice));
        assert!(!is_looping(&thrice[..thrice.len() - 1]));
        assert!(!is_looping(&[&sentence[..], &sentence].concat()));
        // A short phrase needs as many repeats as span 30 tokens: "I don't know" x3 is speech.
        let phrase: Vec<u32> = (200..205).collect();
        assert!(!is_looping(&phrase.repeat(3)));
        assert!(is_looping(&phrase.repeat(6)));
    }

    #[test]
    fn greedy_takes_the_argmax_until_end_of_text() {
        let table = [[0.0, 3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 5.0]];
        let mut s = Search::new(Mode::Greedy, 2, EOT, 10, None, 1);
        let mut step = 0;
        while !s.done() {
            let adv = s.advance(&logits_for(step, 2, &table), 5);
            assert!(adv.in_place());
            step += 1;
        }
        let out = s.finish();
        assert_eq!(out[0].tokens, vec![1, 2]);
        assert_eq!(out[0], out[1]);
        assert!(out[0].avg_logprob() < 0.0);
    }

    #[test]
    fn the_length_bound_ends_every_item() {
        let table = [[0.0, 3.0, 1.0, 0.0, 0.0]];
        for mode in [Mode::Greedy, Mode::Beam { size: 3, patience: 1.0 }] {
            let mut s = Search::new(mode, 1, EOT, 4, None, 1);
            let mut step = 0;
            while !s.done() {
                s.advance(&logits_for(step, s.rows(), &table), 5);
                step += 1;
                assert!(step <= 4);
            }
            assert!(!s.finish()[0].tokens.is_empty());
        }
    }

    /// Greedy commits to the locally best first token; beam search finds the sequence that is
    /// more likely as a whole.
    #[test]
    fn beam_search_beats_greedy_on_a_garden_path() {
        // Step 0: token 1 (p~0.5) vs token 2 (p~0.4). After 1 the model is unsure (flat), after 2
        // it is sure to end. Logits per row depend on the row's last token.
        let next = |last: Option<u32>| -> [f32; 5] {
            match last {
                None => [-9.0, 1.0, 0.8, -9.0, -9.0],
                Some(1) => [0.0, 0.0, 0.0, 0.0, 0.0],
                Some(2) => [-9.0, -9.0, -9.0, -9.0, 5.0],
                _ => [-9.0, -9.0, -9.0, -9.0, 5.0],
            }
        };
        let run = |mode: Mode| {
            let mut s = Search::new(mode, 1, EOT, 8, None, 1);
            while !s.done() {
                let logits: Vec<f32> = (0..s.rows()).flat_map(|r| next(s.seqs[r].last().copied())).collect();
                s.advance(&logits, 5);
            }
            s.finish().remove(0)
        };
        assert_eq!(run(Mode::Greedy).tokens[0], 1);
        let beam = run(Mode::Beam { size: 2, patience: 1.0 });
        assert_eq!(beam.tokens, vec![2]);
    }

    #[test]
    fn beams_reorder_rows() {
        let mut s = Search::new(Mode::Beam { size: 2, patience: 1.0 }, 1, EOT, 8, None, 1);
        let first = s.advance(&logits_for(0, 2, &[[0.0, 2.0, 1.0, -9.0, -9.0]]), 5);
        // Both beams grow from row 0 (the only one expanded at step 0).
        assert_eq!(first.sources, vec![0, 0]);
        assert_eq!(first.tokens, vec![1, 2]);
    }

    #[test]
    fn sampling_at_zero_is_greedy_and_above_zero_varies() {
        let table = [[0.0, 1.0, 1.0, 1.0, -2.0]];
        let mut s = Search::new(Mode::Sample { temperature: 1.0, best_of: 16 }, 1, EOT, 1, None, 7);
        let adv = s.advance(&logits_for(0, 16, &table), 5);
        let distinct: std::collections::BTreeSet<u32> = adv.tokens.iter().copied().collect();
        assert!(distinct.len() > 1, "{:?}", adv.tokens);
    }

    #[test]
    fn top_k_is_sorted_and_skips_masked() {
        assert_eq!(top_k(&[0.1, f32::NEG_INFINITY, 0.5, 0.3], 2), vec![2, 3]);
        assert_eq!(top_k(&[f32::NEG_INFINITY, 1.0], 3), vec![1]);
    }

    #[test]
    fn length_penalty_matches_whisper() {
        let c = Candidate { tokens: vec![1; 10], sum_logprob: -5.0 };
        assert!((c.score(None) + 0.5).abs() < 1e-6);
        assert!((c.score(Some(1.0)) + 5.0 / 2.5).abs() < 1e-6);
    }
}
