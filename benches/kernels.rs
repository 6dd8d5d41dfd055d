//! `cargo bench --bench kernels`: the kernel microbenchmark suite (`biolearn::bench::kernels`)
//! on Fashion-MNIST when installed (`apt-get install -y dataset-fashion-mnist`), else the
//! embedded digits, for MLP 784-1024-10, LeNet and conv3, BP / FA / DFA / PC, at 1 and 2
//! threads. The same as `biolearn bench --kernels --archs 'mlp:1024;lenet;conv3' --rules
//! bp,fa,dfa,pc --threads 1,2`, which also takes other data, networks and settings.

use biolearn::bench::kernels;
use biolearn::config::TrainConfig;

fn main() -> anyhow::Result<()> {
    let fmnist = std::path::Path::new("/usr/share/datasets/fashion-mnist").exists();
    let mut base = toml::Table::new();
    base.insert("data".into(), toml::Value::String(if fmnist { "fashion-mnist" } else { "digits" }.into()));
    base.insert("batch".into(), toml::Value::Integer(128));
    base.insert("schedule".into(), toml::Value::String("constant".into()));
    base.insert("lr".into(), toml::Value::Float(0.01));
    let mut data_cfg = base.clone();
    data_cfg.retain(|k, _| k == "data");
    let ds = biolearn::train::load_data(&TrainConfig::from_table(data_cfg)?)?.ds;
    let rules = ["bp", "fa", "dfa", "pc"]
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let archs: Vec<String> = ["mlp:1024", "lenet", "conv3"].iter().map(|s| s.to_string()).collect();
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick { kernels::Options::quick() } else { kernels::Options::full() };
    let rows = kernels::run(&ds, &base, &rules, &archs, &[1, 2], &opts, |r| {
        eprintln!("{} {} {} {} threads: {:.4} ms", r.section, r.arch, r.name, r.threads, 1e3 * r.seconds)
    })
    .map_err(anyhow::Error::msg)?;
    println!(
        "# biolearn kernel suite on {} (data: {})\n{}",
        biolearn::linalg::kernel_path(),
        ds.name,
        kernels::markdown(&rows)
    );
    Ok(())
}
