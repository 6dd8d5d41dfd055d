//! The examples/ (a rule and a data set added from outside biolearn, through the public
//! registry API) build and run, and what they register is known everywhere a built-in is.

#[path = "../examples/custom_rule.rs"]
mod custom_rule;

#[path = "../examples/custom_data.rs"]
mod custom_data;

#[test]
fn an_outside_rule_registers_and_trains_like_a_built_in_one() {
    let (shallow, bp) = custom_rule::run().unwrap();
    // Measured when written: shallow 92.8%, BP 95.3% (digits, 5 epochs). Chance is 10%.
    assert!(shallow > 0.8 && bp > 0.9, "{shallow} {bp}");
    let r: biolearn::rules::RuleName = "shallow".parse().unwrap();
    assert!(biolearn::rules::RuleName::all().contains(&r), "listed with the built-in rules");
    assert_eq!(r.entry().settings.names(), vec!["train_last"]);
    // Its settings are checked like a built-in rule's, and a name cannot be taken twice.
    let t: toml::Table = "rule = 'shallow'\ntrain_last = 0".parse().unwrap();
    assert!(biolearn::config::TrainConfig::load(None, t).unwrap_err().to_string().contains("train_last"));
    assert!(biolearn::rules::register(custom_rule::SHALLOW).is_err());
    assert!(biolearn::rules::register(biolearn::rules::RuleEntry { name: "bp", ..custom_rule::SHALLOW }).is_err());
    // A plan's rules = "all" takes it in.
    let plan: biolearn::protocol::plan::Plan = toml::from_str("rules = \"all\"").unwrap();
    assert!(plan.rules.contains(&r));
}

#[test]
fn an_outside_data_set_registers_from_npy_files_and_trains() {
    let dir = std::env::temp_dir().join(format!("biolearn-example-bars-{}", std::process::id()));
    let (bp, drtp) = custom_data::run(&dir).unwrap();
    assert!(bp > 0.9 && drtp > 0.9, "{bp} {drtp}");
    let ds = biolearn::data::load_by_name("bars", Some(&dir)).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes, ds.train.n, ds.test.n), (1, 6, 6, 3, 600, 300));
    assert!(biolearn::data::register("digits", |_| unreachable!()).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
