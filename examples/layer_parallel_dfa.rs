//! The measured speed-up of layer-parallel DFA's backward phase (`dfa_parallel`: every block's
//! projected error, backward and weight gradient at once) against the same blocks one after
//! another, for N = 2, 4, 8 hidden layers of 256 (784 inputs, 10 classes, batch 128), in a pool
//! of the machine's cores; the forward pass is not timed (it runs once, before). Best of 5 rounds
//! of 80 repetitions. The README's layer-parallel figures come from this:
//!   cargo run --release --example layer_parallel_dfa

use biolearn::nn::arch::Builder;
use biolearn::nn::{Activation, Init, Loss, Shape, Workspace};
use biolearn::rng::Rng;
use biolearn::rules::dfa::{project_error, Dfa, DfaInit};

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for hidden in [2usize, 4, 8] {
        let mut init_rng = Rng::new(51);
        let mut b = Builder::new(Shape::flat(784), Init::Torch, &mut init_rng);
        for _ in 0..hidden {
            b = b.dense(256, true).act(Activation::Relu);
        }
        let mut net = b.dense(10, true).build();
        let rule = Dfa::with_init(&mut net, &mut Rng::new(52), DfaInit::Xavier);
        let mut data = Rng::new(53);
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 128);
        data.fill_normal(ws.input_mut(), 1.0);
        let y: Vec<u32> = (0..128).map(|_| data.below(10) as u32).collect();
        let mut g = net.zero_grads();
        biolearn::rules::forward_with_error(&mut net, &mut ws, &y, Loss::Ce, &mut Rng::new(1));
        let mut time = |threads: usize, parallel: bool| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut best = f64::INFINITY;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    for _ in 0..80 {
                        if parallel {
                            rule.fb.backward_parallel(&net, &mut ws, &mut g);
                        } else {
                            rule.fb.backward(&net, &mut ws, &mut g, project_error);
                        }
                    }
                    best = best.min(t.elapsed().as_secs_f64() / 80.0);
                }
                best
            })
        };
        let (one, seq, par) = (time(1, false), time(cores, false), time(cores, true));
        println!(
            "N = {hidden}: backward {:.1} us on 1 thread; {cores} threads: sequential blocks {:.1} us ({:.2}x), \
             layer-parallel {:.1} us ({:.2}x over 1 thread, {:.2}x over sequential; ideal min(N, cores) = {})",
            one * 1e6,
            seq * 1e6,
            one / seq,
            par * 1e6,
            one / par,
            seq / par,
            hidden.min(cores)
        );
    }
}
