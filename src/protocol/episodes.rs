//! Few-shot online learning: episodes of `ways` classes x `shots` examples seen once each, one
//! sample a step, from a freshly initialised network; scored on held-out query examples of the
//! same classes. Any rule runs it (its configuration's batch, normally 1; `passes` over the
//! episode's stream, normally 1), through the same `Trainer` as every other run.
//!
//! Meta-training (`meta_train`): evolution strategies over a few numeric settings of a rule (the
//! coefficients of `meta-plasticity`), each iteration scoring antithetic pairs theta +- sigma eps
//! on one shared episode and one shared initialisation (common random numbers), the fitness
//! being the query accuracy after the episode (ties broken by the cross-entropy), shaped into
//! centred ranks R, and an Adam step along the estimate
//!   g = sum_i (R(theta + sigma eps_i) - R(theta - sigma eps_i)) eps_i / (2 sigma P).
//! Evolution strategies, not reverse-mode differentiation through the episode as in the
//! reference (biolearn has none, and a few coefficients need none), nor forward mode (a
//! tangent per coefficient through every plastic step would need the rule's own derivative).
//!
//! Episodes are drawn from a split's examples of the given classes: meta-training from the
//! training split of one set of classes, evaluation from the test split of others.

use crate::config::TrainConfig;
use crate::data::{Dataset, Split};
use crate::nn::Shape;
use crate::rng::Rng;
use crate::train::{NoHooks, Progressed, Splits, Trainer};
use serde::{Deserialize, Serialize};

/// The most shots, queries, episodes or antithetic pairs a run may ask for.
pub const MAX_COUNT: usize = 1_000_000;

/// What an episode is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSpec {
    /// The classes episodes are drawn from (at least `ways` of them).
    pub classes: Vec<u32>,
    pub ways: usize,
    /// Training examples per class, seen once each in a shuffled stream.
    pub shots: usize,
    /// Query examples per class (disjoint from the shots).
    pub queries: usize,
    /// Passes over the stream (1: online).
    pub passes: usize,
}

impl EpisodeSpec {
    pub fn check(&self, split: &Split, classes: usize) -> Result<(), String> {
        if self.ways < 2 || self.shots == 0 || self.queries == 0 || self.passes == 0 {
            return Err("episodes need ways >= 2, shots >= 1, queries >= 1 and passes >= 1".into());
        }
        if self.shots > MAX_COUNT || self.queries > MAX_COUNT || self.passes > crate::limits::MAX_EPOCHS {
            return Err(format!(
                "episodes: shots and queries at most {MAX_COUNT} per class, passes at most {}",
                crate::limits::MAX_EPOCHS
            ));
        }
        if self.classes.len() < self.ways {
            return Err(format!("{} classes given for {}-way episodes", self.classes.len(), self.ways));
        }
        let by = crate::data::sampling::class_indices(split, classes);
        for &c in &self.classes {
            let have = by.get(c as usize).map_or(0, Vec::len);
            if have < self.shots + self.queries {
                return Err(format!(
                    "class {c} has {have} examples, fewer than shots + queries = {}",
                    self.shots + self.queries
                ));
            }
        }
        Ok(())
    }
}

/// One episode: its training stream and its query set, labels 0..ways.
pub struct Episode {
    pub train: Split,
    pub query: Split,
}

/// Draw an episode: `ways` of the spec's classes in a random order (class i becomes label i),
/// `shots` + `queries` distinct examples of each, the shots shuffled into one stream.
pub fn sample_episode(split: &Split, by_class: &[Vec<usize>], spec: &EpisodeSpec, rng: &mut Rng) -> Episode {
    let mut classes = spec.classes.clone();
    rng.shuffle(&mut classes);
    let (mut train, mut query) = (Vec::new(), Vec::new());
    for (label, &c) in classes[..spec.ways].iter().enumerate() {
        let mut idx = by_class[c as usize].clone();
        rng.shuffle(&mut idx);
        train.extend(idx[..spec.shots].iter().map(|&i| (i, label as u32)));
        query.extend(idx[spec.shots..spec.shots + spec.queries].iter().map(|&i| (i, label as u32)));
    }
    rng.shuffle(&mut train);
    let take = |items: &[(usize, u32)]| {
        let d = split.dim;
        let mut x = Vec::with_capacity(items.len() * d);
        for &(i, _) in items {
            x.extend_from_slice(&split.x[i * d..(i + 1) * d]);
        }
        Split { x, y: items.iter().map(|&(_, l)| l).collect(), n: items.len(), dim: d }
    };
    Episode { train: take(&train), query: take(&query) }
}

/// An episode's outcome: query accuracy and mean cross-entropy (NaN losses count as diverged).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EpisodeResult {
    pub accuracy: f64,
    pub loss: f64,
    pub diverged: bool,
}

/// Learn one episode from a fresh network (initialised from `init_seed`) under `cfg` and score
/// its query set.
pub fn run_episode(
    cfg: &TrainConfig,
    input: Shape,
    ep: &Episode,
    ways: usize,
    passes: usize,
    init_seed: u64,
) -> Result<EpisodeResult, String> {
    let mut cfg = cfg.clone();
    cfg.epochs = passes;
    let mut rng = Rng::new(init_seed);
    let mut tr = Trainer::new(&cfg, input, ways, &mut rng)?;
    let done =
        tr.fit(Splits { train: &ep.train, val: None, test: None }, Progressed::default(), passes, &mut NoHooks)?;
    let (accuracy, loss) = tr.evaluate_with_loss(&ep.query);
    let diverged = done.diverged.is_some() || !loss.is_finite();
    Ok(EpisodeResult { accuracy: if diverged { 1.0 / ways as f64 } else { accuracy }, loss, diverged })
}

/// Many episodes' mean query accuracy with its 95% interval over episodes.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub rule: String,
    pub episodes: usize,
    pub mean_accuracy: f64,
    pub ci95: f64,
    pub mean_loss: f64,
    pub diverged: usize,
    pub accuracies: Vec<f64>,
}

/// `episodes` episodes of `spec` from `split` (episode e drawn from seed `seed + e`, its
/// network initialised from the same), under `cfg`.
pub fn evaluate(
    cfg: &TrainConfig,
    ds: &Dataset,
    split: &Split,
    spec: &EpisodeSpec,
    episodes: usize,
    seed: u64,
) -> Result<Summary, String> {
    spec.check(split, ds.num_classes)?;
    if episodes == 0 || episodes > MAX_COUNT {
        return Err(format!("episodes: between 1 and {MAX_COUNT}"));
    }
    let by = crate::data::sampling::class_indices(split, ds.num_classes);
    let input = Shape::new(ds.channels, ds.height, ds.width);
    let mut results = Vec::with_capacity(episodes);
    for e in 0..episodes as u64 {
        let ep = sample_episode(split, &by, spec, &mut Rng::new(seed.wrapping_add(e).wrapping_mul(0x9E37_79B9)));
        results.push(run_episode(cfg, input, &ep, spec.ways, spec.passes, seed.wrapping_add(e))?);
    }
    let acc: Vec<f64> = results.iter().map(|r| r.accuracy).collect();
    let (mean, ci) = mean_ci(&acc);
    let finite: Vec<f64> = results.iter().map(|r| r.loss).filter(|l| l.is_finite()).collect();
    Ok(Summary {
        rule: cfg.rule.to_string(),
        episodes,
        mean_accuracy: mean,
        ci95: ci,
        mean_loss: if finite.is_empty() { f64::NAN } else { finite.iter().sum::<f64>() / finite.len() as f64 },
        diverged: results.iter().filter(|r| r.diverged).count(),
        accuracies: acc,
    })
}

/// Mean and the half-width of its normal 95% interval.
fn mean_ci(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    if v.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// The evolution strategy's budget and steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EsConfig {
    pub iterations: usize,
    /// Antithetic pairs per iteration (2 x pairs episodes, plus one at theta for the log).
    pub pairs: usize,
    /// Perturbation size, in each setting's own units.
    pub sigma: f64,
    /// Adam's step size, in the settings' units.
    pub lr: f64,
    pub seed: u64,
}

/// One meta-training iteration's record.
#[derive(Clone, Debug, Serialize)]
pub struct EsStep {
    pub iteration: usize,
    /// theta before this iteration's step.
    pub theta: Vec<f64>,
    /// theta's own episode: query accuracy and cross-entropy.
    pub accuracy: f64,
    pub loss: f64,
    /// The mean query accuracy over the perturbed candidates that did not diverge.
    pub mean_fitness: f64,
}

/// Set `key` (a rule setting, or the shared `lr`) to `v` in `cfg`; `log:KEY` sets KEY to
/// exp(v) (a setting searched on a log scale, such as a learning rate that must stay positive);
/// `KEY[i]` sets entry i of the list setting KEY (entries missing before it become 0).
fn set(cfg: &mut TrainConfig, key: &str, v: f64) {
    if let Some(k) = key.strip_prefix("log:") {
        return set(cfg, k, v.exp());
    }
    if let Some((name, i)) = element(key) {
        let entry = cfg.settings.entry(name.to_string()).or_insert_with(|| toml::Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = toml::Value::Array(Vec::new());
        }
        let list = entry.as_array_mut().expect("an array");
        if list.len() <= i {
            list.resize(i + 1, toml::Value::Float(0.0));
        }
        list[i] = toml::Value::Float(v);
    } else if key == "lr" {
        cfg.lr = v as f32;
    } else {
        cfg.settings.insert(key.to_string(), toml::Value::Float(v));
    }
}

/// `KEY[i]`: (KEY, i).
fn element(key: &str) -> Option<(&str, usize)> {
    let (name, rest) = key.split_once('[')?;
    Some((name, rest.strip_suffix(']')?.parse().ok()?))
}

/// The keys a `--keys` list names: comma-separated settings, `log:KEY`, `KEY[i]` (one entry of a
/// list setting) and `KEY[a..b]` (its entries a to b - 1).
pub fn expand_keys(list: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match k.split_once('[') {
            Some((name, range)) if range.contains("..") => {
                let bad = || format!("--keys {k}: expected {name}[A..B] with A < B <= {MAX_COUNT}");
                let (a, b) = range.strip_suffix(']').and_then(|r| r.split_once("..")).ok_or_else(bad)?;
                let (a, b) = (a.parse::<usize>().map_err(|_| bad())?, b.parse::<usize>().map_err(|_| bad())?);
                if a >= b || b > MAX_COUNT {
                    return Err(bad());
                }
                keys.extend((a..b).map(|i| format!("{name}[{i}]")));
            }
            Some(_) if element(k).is_none() => return Err(format!("--keys {k}: expected KEY[i] or KEY[A..B]")),
            // A list grows to hold its entry: an index no list can have is refused here.
            Some(_) if element(k).is_some_and(|(_, i)| i >= MAX_COUNT) => {
                return Err(format!("--keys {k}: a list entry's index must be below {MAX_COUNT}"))
            }
            _ => keys.push(k.to_string()),
        }
    }
    if keys.is_empty() {
        return Err("--keys: no setting named".into());
    }
    // One value per setting: `lr` and `log:lr`, or an entry named twice, would write it twice.
    let mut seen = std::collections::BTreeSet::new();
    for k in &keys {
        if !seen.insert(k.strip_prefix("log:").unwrap_or(k)) {
            return Err(format!("--keys: {k} is named twice"));
        }
    }
    Ok(keys)
}

/// A TOML number as f64 (an integer too).
fn number(v: &toml::Value) -> Option<f64> {
    v.as_float().or(v.as_integer().map(|i| i as f64))
}

/// The value `key` starts from in `cfg` (see `set`; a list entry past the list's end is 0).
pub fn start_of(cfg: &TrainConfig, key: &str) -> Result<f64, String> {
    let (k, log) = key.strip_prefix("log:").map_or((key, false), |k| (k, true));
    let v = if k == "lr" {
        f64::from(cfg.lr)
    } else if let Some((name, i)) = element(k) {
        let list = cfg.settings.get(name).and_then(|v| v.as_array());
        let list = list.ok_or_else(|| format!("--keys {k}: {name} is not a list setting of rule {}", cfg.rule))?;
        list.get(i).map_or(Some(0.0), number).ok_or_else(|| format!("--keys {k}: not a number"))?
    } else {
        let v = cfg.settings.get(k).ok_or_else(|| format!("--keys {k}: not a setting of rule {}", cfg.rule))?;
        number(v).ok_or_else(|| format!("--keys {k}: not a number"))?
    };
    if log && v <= 0.0 {
        return Err(format!("--keys {key}: a log-scale setting must start positive (it is {v})"));
    }
    Ok(if log { v.ln() } else { v })
}

/// `KEY = value` lines for a learned theta (a `log:` key back on its own scale; the entries of a
/// list setting gathered into one list, over the start's own entries).
pub fn theta_toml(cfg: &TrainConfig, keys: &[String], theta: &[f64]) -> String {
    let mut out = String::new();
    let mut lists: Vec<(String, Vec<f64>)> = Vec::new();
    for (k, v) in keys.iter().zip(theta) {
        // A log-scale key is written on its own scale (a list entry's too).
        let (k, v) = match k.strip_prefix("log:") {
            Some(k) => (k, &v.exp()),
            None => (k.as_str(), v),
        };
        if let Some((name, i)) = element(k) {
            let at = match lists.iter().position(|(n, _)| n == name) {
                Some(at) => at,
                None => {
                    let start: Vec<f64> = cfg
                        .settings
                        .get(name)
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter().map(|v| v.as_float().or(v.as_integer().map(|i| i as f64)).unwrap_or(0.0)).collect()
                        })
                        .unwrap_or_default();
                    lists.push((name.to_string(), start));
                    lists.len() - 1
                }
            };
            let list = &mut lists[at].1;
            if list.len() <= i {
                list.resize(i + 1, 0.0);
            }
            list[i] = *v;
        } else {
            out.push_str(&format!("{k} = {v:?}\n"));
        }
    }
    // (Debug: a float always with its point or exponent, so that TOML reads a float.)
    for (name, list) in lists {
        let vals: Vec<String> = list.iter().map(|v| format!("{v:?}")).collect();
        out.push_str(&format!("{name} = [{}]\n", vals.join(", ")));
    }
    out
}

/// Meta-train the settings `keys` (starting at `start`) of `cfg`'s rule by evolution strategies
/// over episodes of `spec` drawn from `split`. Calls `log` after every iteration; returns the
/// final theta and the iterations' records.
#[allow(clippy::too_many_arguments)]
pub fn meta_train(
    cfg: &TrainConfig,
    ds: &Dataset,
    split: &Split,
    spec: &EpisodeSpec,
    keys: &[String],
    start: &[f64],
    es: &EsConfig,
    mut log: impl FnMut(&EsStep),
) -> Result<(Vec<f64>, Vec<EsStep>), String> {
    use rayon::prelude::*;
    spec.check(split, ds.num_classes)?;
    if keys.is_empty() || keys.len() != start.len() {
        return Err("meta-train: one start value per setting".into());
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if es.pairs == 0 || es.pairs > MAX_COUNT || es.iterations > MAX_COUNT || !positive(es.sigma) || !positive(es.lr) {
        return Err(format!(
            "meta-train: pairs between 1 and {MAX_COUNT}, iterations at most {MAX_COUNT}, sigma > 0 and lr > 0"
        ));
    }
    let by = crate::data::sampling::class_indices(split, ds.num_classes);
    let input = Shape::new(ds.channels, ds.height, ds.width);
    let k = keys.len();
    let mut theta = start.to_vec();
    let (mut m, mut v) = (vec![0.0; k], vec![0.0; k]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut steps = Vec::new();
    let mut rng = Rng::new(es.seed);
    for it in 0..es.iterations {
        let ep_seed = rng.next_u64();
        let init_seed = rng.next_u64();
        let ep = sample_episode(split, &by, spec, &mut Rng::new(ep_seed));
        let noise: Vec<Vec<f64>> = (0..es.pairs).map(|_| (0..k).map(|_| rng.normal() as f64).collect()).collect();
        // Candidates: theta itself, then theta + sigma eps_i and theta - sigma eps_i per pair.
        let mut cands = vec![theta.clone()];
        for e in &noise {
            for sign in [1.0, -1.0] {
                cands.push(theta.iter().zip(e).map(|(t, ei)| t + sign * es.sigma * ei).collect());
            }
        }
        let scores: Vec<Result<EpisodeResult, String>> = cands
            .par_iter()
            .map(|c| {
                let mut cc = cfg.clone();
                for (key, val) in keys.iter().zip(c) {
                    set(&mut cc, key, *val);
                }
                run_episode(&cc, input, &ep, spec.ways, spec.passes, init_seed)
            })
            .collect();
        // theta itself must be a valid setting; a perturbed candidate outside a setting's range
        // (a rate below zero) ranks as diverged.
        let mut scores = scores.into_iter();
        let own = scores.next().expect("theta is a candidate").map_err(|e| format!("theta {theta:?}: {e}"))?;
        let bad = EpisodeResult { accuracy: 0.0, loss: f64::NAN, diverged: true };
        let scores: Vec<EpisodeResult> = std::iter::once(own).chain(scores.map(|r| r.unwrap_or(bad))).collect();
        // Fitness: the query accuracy, ties broken by minus the query cross-entropy (a diverged
        // candidate ranks last), shaped into centred ranks in [-0.5, 0.5] over the perturbed
        // candidates (Salimans et al. 2017), so that one blown-up episode does not swamp the
        // estimate. Not the cross-entropy alone: a network whose outputs collapse to uniform
        // scores ln(ways), better than one that learned the classes with overconfident logits,
        // and the strategy then walks into the collapse.
        let fit = |s: &EpisodeResult| {
            if s.loss.is_finite() && !s.diverged {
                (s.accuracy, -s.loss)
            } else {
                (f64::NEG_INFINITY, f64::NEG_INFINITY)
            }
        };
        let fits: Vec<(f64, f64)> = scores[1..].iter().map(fit).collect();
        let mut order: Vec<usize> = (0..fits.len()).collect();
        order.sort_by(|&a, &b| fits[a].0.total_cmp(&fits[b].0).then(fits[a].1.total_cmp(&fits[b].1)));
        // Tied candidates (both of a pair diverged, the same accuracy and loss) share their
        // mean rank, so that a tie adds nothing to the estimate.
        let mut rank = vec![0.0; fits.len()];
        let denom = (fits.len() - 1).max(1) as f64;
        let mut a = 0;
        while a < order.len() {
            let mut b = a + 1;
            while b < order.len() && fits[order[b]] == fits[order[a]] {
                b += 1;
            }
            let r = (a + b - 1) as f64 / 2.0 / denom - 0.5;
            for &i in &order[a..b] {
                rank[i] = r;
            }
            a = b;
        }
        let mut g = vec![0.0; k];
        for (i, e) in noise.iter().enumerate() {
            let d = rank[2 * i] - rank[2 * i + 1];
            for (gj, ej) in g.iter_mut().zip(e) {
                *gj += d * ej / (2.0 * es.sigma * es.pairs as f64);
            }
        }
        let finite: Vec<f64> = fits.iter().map(|f| f.0).filter(|f| f.is_finite()).collect();
        let mean_fitness = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
        let step = EsStep {
            iteration: it + 1,
            theta: theta.clone(),
            accuracy: scores[0].accuracy,
            loss: scores[0].loss,
            mean_fitness,
        };
        log(&step);
        steps.push(step);
        // Adam ascent.
        let t = (it + 1) as i32;
        for j in 0..k {
            m[j] = b1 * m[j] + (1.0 - b1) * g[j];
            v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
            let (mh, vh) = (m[j] / (1.0 - b1.powi(t)), v[j] / (1.0 - b2.powi(t)));
            theta[j] += es.lr * mh / (vh.sqrt() + eps);
        }
    }
    Ok((theta, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits() -> Dataset {
        let cfg = TrainConfig::default();
        crate::train::load_data(&cfg).unwrap().ds
    }

    #[test]
    fn episodes_draw_distinct_examples_of_the_asked_classes() {
        let ds = digits();
        let spec = EpisodeSpec { classes: vec![5, 6, 7, 8, 9], ways: 3, shots: 4, queries: 2, passes: 1 };
        spec.check(&ds.train, 10).unwrap();
        let by = crate::data::sampling::class_indices(&ds.train, 10);
        let ep = sample_episode(&ds.train, &by, &spec, &mut Rng::new(1));
        assert_eq!((ep.train.n, ep.query.n), (12, 6));
        for l in 0..3u32 {
            assert_eq!(ep.train.y.iter().filter(|&&y| y == l).count(), 4);
            assert_eq!(ep.query.y.iter().filter(|&&y| y == l).count(), 2);
        }
        // No query example is a training one.
        for q in ep.query.x.chunks_exact(ep.query.dim) {
            assert!(ep.train.x.chunks_exact(ep.train.dim).all(|t| t != q));
        }
        let bad = EpisodeSpec { classes: vec![1, 2], ways: 3, ..spec.clone() };
        assert!(bad.check(&ds.train, 10).is_err());
        let too_many = EpisodeSpec { shots: 10_000, ..spec };
        assert!(too_many.check(&ds.train, 10).unwrap_err().contains("fewer than"));
    }

    /// `KEY[A..B]` names list entries; a candidate sets one entry (zeros before it); the learned
    /// theta is written back as the whole list, over the start's own entries.
    #[test]
    fn list_setting_entries_are_keys() {
        let keys = expand_keys("lr, tdca_phi[2..4],log:weight_decay").unwrap();
        assert_eq!(keys, ["lr", "tdca_phi[2]", "tdca_phi[3]", "log:weight_decay"]);
        for bad in ["tdca_phi[3..3]", "tdca_phi[x..4]", "tdca_phi[2", "", "lr,log:lr", "a[1],a[0..2]"] {
            assert!(expand_keys(bad).is_err(), "{bad}");
        }
        let mut cfg = TrainConfig { rule: "tdca".parse().unwrap(), ..Default::default() };
        cfg.settings.insert("tdca_phi".into(), toml::Value::Array(vec![toml::Value::Float(0.5)]));
        assert_eq!(start_of(&cfg, "tdca_phi[0]").unwrap(), 0.5);
        assert_eq!(start_of(&cfg, "tdca_phi[7]").unwrap(), 0.0);
        assert!(start_of(&cfg, "no_such[0]").is_err());
        set(&mut cfg, "tdca_phi[2]", 1.5);
        let list: Vec<f64> =
            cfg.settings["tdca_phi"].as_array().unwrap().iter().map(|v| v.as_float().unwrap()).collect();
        assert_eq!(list, [0.5, 0.0, 1.5]);
        let keys: Vec<String> = ["tdca_phi[1]".to_string(), "log:lr".to_string()].into();
        let text = theta_toml(&cfg, &keys, &[2.0, 0.0]);
        assert_eq!(text, "lr = 1.0\ntdca_phi = [0.5, 2.0, 1.5]\n");
        // A log-scale list entry goes into the list on its own scale.
        let keys: Vec<String> = ["log:tdca_phi[0]".to_string()].into();
        assert_eq!(theta_toml(&cfg, &keys, &[0.0]), "tdca_phi = [1.0, 0.0, 1.5]\n");
        assert!(theta_toml(&cfg, &keys, &[0.0]).parse::<toml::Table>().is_ok());
    }

    /// On online few-shot digits with only Oja's term at the start, the strategy raises the
    /// pseudo-gradient coefficient (the term that learns the labels) and the query accuracy.
    #[test]
    fn meta_training_moves_toward_the_pseudo_gradient_term() {
        let ds = digits();
        let cfg = TrainConfig {
            rule: "meta-plasticity".parse().unwrap(),
            arch: "mlp:32".into(),
            batch: 1,
            threads: 1,
            ..Default::default()
        };
        let spec = EpisodeSpec { classes: (0..5).collect(), ways: 5, shots: 10, queries: 10, passes: 1 };
        let keys: Vec<String> = ["mp_pseudo_grad", "mp_oja"].iter().map(|s| s.to_string()).collect();
        let es = EsConfig { iterations: 40, pairs: 4, sigma: 1e-2, lr: 5e-3, seed: 3 };
        let (theta, steps) = meta_train(&cfg, &ds, &ds.train, &spec, &keys, &[0.0, 1e-3], &es, |_| {}).unwrap();
        assert!(theta[0] > 0.02, "pseudo-gradient coefficient stayed at {}: {theta:?}", theta[0]);
        let first: f64 = steps[..5].iter().map(|s| s.accuracy).sum::<f64>() / 5.0;
        let last: f64 = steps[35..].iter().map(|s| s.accuracy).sum::<f64>() / 5.0;
        assert!(last > first + 0.2, "query accuracy {first:.2} -> {last:.2}");
    }
}
