//! Configuration: presets, files, overrides, and errors that name the key.

use diccae_engine::config::{Config, InitScheme};

fn tmp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("diccae-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("cfg.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn presets_resolve_and_round_trip() {
    for name in ["tiny", "base"] {
        let cfg = Config::resolve(Some(name), None, &[]).unwrap();
        assert_eq!(cfg, Config::preset(name).unwrap());
        let text = cfg.to_toml().unwrap();
        let back = Config::resolve(None, Some(&tmp_file(name, &text)), &[]).unwrap();
        assert_eq!(back, cfg);
    }
    assert!(
        Config::preset("huge")
            .unwrap_err()
            .to_string()
            .contains("huge")
    );
}

#[test]
fn file_and_overrides_layer_over_the_preset() {
    let p = tmp_file("layer", "[train]\nepochs = 3\n[diccae]\ntau = 0.2\n");
    let cfg = Config::resolve(
        None,
        Some(&p),
        &["train.batch_size=16".into(), "train.epochs=4".into()],
    )
    .unwrap();
    assert_eq!(cfg.train.epochs, 4);
    assert_eq!(cfg.train.batch_size, 16);
    assert!((cfg.diccae.tau - 0.2).abs() < 1e-7);
    assert_eq!(cfg.model, Config::preset("tiny").unwrap().model);
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let p = tmp_file("unknown", "[train]\nepohcs = 3\n");
    let err = Config::resolve(None, Some(&p), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("epohcs"), "{err}");
    assert!(err.contains("cfg.toml"), "{err}");
    let err = Config::resolve(None, None, &["model.width=3".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("width"), "{err}");
    let err = Config::resolve(None, None, &["nonsense".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("section.key=value"), "{err}");
}

#[test]
fn inconsistent_knobs_are_rejected() {
    let err = Config::resolve(None, None, &["model.heads=3".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("heads"), "{err}");
    let err = Config::resolve(None, None, &["model.audio_patch=7".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio_patch"), "{err}");
    let err = Config::resolve(None, None, &["train.batch_size=1".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn cluster_space_is_a_named_choice() {
    use diccae_engine::config::ClusterSpace;
    let cfg = Config::resolve(None, None, &["diccae.cluster_space=fused".into()]).unwrap();
    assert_eq!(cfg.diccae.cluster_space, ClusterSpace::Fused);
    assert_eq!(
        Config::preset("tiny").unwrap().diccae.cluster_space,
        ClusterSpace::AudioVideo
    );
    let err = Config::resolve(None, None, &["diccae.cluster_space=pixels".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pixels") || err.contains("cluster_space"),
        "{err}"
    );
}

#[test]
fn stored_configs_missing_a_newer_knob_behave_as_before_it() {
    let base = Config::resolve(Some("base"), None, &["diccae.lambda_cls=0.25".into()]).unwrap();
    let text = base.to_toml().unwrap();
    // Runs saved before these knobs existed trained every clip on K = classes.
    let without: String = text
        .lines()
        .filter(|l| {
            ![
                "confident_fraction",
                "clusters_per_class",
                "gate_deadline",
                "init",
                "position_std",
                "lambda_fused",
                "fused_from_gate",
                "cluster_grad_ratio",
                "keep_checkpoints",
                "steps",
            ]
            .iter()
            .any(|k| l.starts_with(&format!("{k} =")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text, "the knobs were in the stored text");
    let parsed = Config::from_toml(&without).unwrap();
    assert_eq!(parsed.diccae.confident_fraction, 1.0);
    assert_eq!(parsed.diccae.clusters_per_class, 1.0);
    assert_eq!(parsed.diccae.lambda_cls, 0.25);
    assert_eq!(parsed.diccae.gate_deadline, 1.0, "no deadline");
    assert_eq!(parsed.model.init, InitScheme::Normal);
    assert_eq!(parsed.model.position_std, 0.02);
    assert_eq!(parsed.diccae.lambda_fused, 0.0, "no fused instance term");
    assert!(!parsed.diccae.fused_from_gate);
    assert_eq!(parsed.diccae.cluster_grad_ratio, 0.0, "no cap");
    assert_eq!(parsed.train.keep_checkpoints, 0, "every checkpoint kept");
    assert_eq!(parsed.model.video_position_std, None);
    assert_eq!(
        Config::from_toml(&text).unwrap(),
        base,
        "a complete text round-trips"
    );

    let unknown = format!("{text}\n[extra]\nknob = 1\n");
    let err = Config::from_toml(&unknown).unwrap_err().to_string();
    assert!(err.contains("extra"), "{err}");
}

#[test]
fn cluster_count_follows_the_classes_or_the_explicit_knob() {
    let per =
        |f: &str| Config::resolve(None, None, &[format!("diccae.clusters_per_class={f}")]).unwrap();
    assert_eq!(per("1").cluster_count(10).unwrap(), 10);
    assert_eq!(per("2").cluster_count(10).unwrap(), 20);
    assert_eq!(per("1.5").cluster_count(3).unwrap(), 5, "rounded");
    assert_eq!(per("0.1").cluster_count(4).unwrap(), 2, "at least 2");
    let err = per("2").cluster_count(0).unwrap_err().to_string();
    assert!(err.contains("diccae.clusters"), "{err}");
    let fixed = Config::resolve(None, None, &["diccae.clusters=7".into()]).unwrap();
    assert_eq!(fixed.cluster_count(0).unwrap(), 7);
    assert_eq!(fixed.cluster_count(10).unwrap(), 7);
    let bad = Config::resolve(None, None, &["diccae.clusters_per_class=0".into()]);
    assert!(bad.unwrap_err().to_string().contains("clusters_per_class"));
}

#[test]
fn epochs_follow_the_dataset_size_when_not_set() {
    let sets = |s: &[&str]| {
        Config::resolve(
            None,
            None,
            &s.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let auto = sets(&["train.epochs=0", "train.steps=1000", "train.batch_size=100"]);
    assert_eq!(auto.epochs_for(2500), 40, "25 steps per epoch");
    assert_eq!(
        auto.epochs_for(2550),
        40,
        "the last partial batch is dropped"
    );
    assert_eq!(auto.epochs_for(600), 167, "6 steps per epoch, rounded up");
    assert_eq!(
        auto.epochs_for(50),
        1000,
        "a batch larger than the data is one step"
    );
    assert_eq!(auto.epochs_for(1_000_000), 1, "at least one epoch");
    let fixed = sets(&["train.epochs=7"]);
    assert_eq!(fixed.epochs_for(2500), 7);
    assert_eq!(fixed.epochs_for(10), 7);
    let err = Config::resolve(
        None,
        None,
        &["train.epochs=0".into(), "train.steps=0".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("train.steps"), "{err}");
    for bad in ["0", "1.5", "-0.1"] {
        let err = Config::resolve(None, None, &[format!("diccae.gate_deadline={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gate_deadline"), "{bad}: {err}");
    }
    let video = sets(&["model.video_position_std=0.5"]);
    assert_eq!(video.model.video_position_std, Some(0.5));
    assert_eq!(Config::from_toml(&video.to_toml().unwrap()).unwrap(), video);
    let init = sets(&["model.init=fan_in"]);
    assert_eq!(init.model.init, InitScheme::FanIn);
    let err = Config::resolve(None, None, &["model.init=xavier".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("xavier") || err.contains("init"), "{err}");
    for bad in ["-0.5", "inf", "nan"] {
        let err = Config::resolve(None, None, &[format!("model.position_std={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("position_std"), "{bad}: {err}");
        let err = Config::resolve(None, None, &[format!("model.video_position_std={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("video_position_std"), "{bad}: {err}");
        let err = Config::resolve(None, None, &[format!("diccae.lambda_fused={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lambda_fused"), "{bad}: {err}");
        let err = Config::resolve(None, None, &[format!("diccae.cluster_grad_ratio={bad}")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster_grad_ratio"), "{bad}: {err}");
    }
}

/// Every leaf key of a TOML table, dotted.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => leaf_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

#[test]
fn every_key_has_a_range_rule() {
    use diccae_engine::config::rules::KEY_RULES;
    let ruled: Vec<&str> = KEY_RULES.iter().map(|(k, _)| *k).collect();
    for preset in ["tiny", "base"] {
        // video_position_std is optional: set it so its key is listed too.
        let cfg =
            Config::resolve(Some(preset), None, &["model.video_position_std=0.1".into()]).unwrap();
        let table = toml::Table::try_from(&cfg).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&table, "", &mut keys);
        for k in &keys {
            assert!(
                ruled.contains(&k.as_str()),
                "{k} has no rule in config::rules::KEY_RULES"
            );
        }
        for k in &ruled {
            assert!(keys.iter().any(|x| x == k), "rule for a missing key {k}");
        }
    }
}

#[test]
fn out_of_range_knobs_are_refused_naming_the_key() {
    for (set, key) in [
        ("train.grad_clip=-1", "train.grad_clip"),
        ("train.grad_clip=0", "train.grad_clip"),
        ("train.beta1=1.5", "train.beta1"),
        ("train.beta2=1", "train.beta2"),
        ("train.weight_decay=-5", "train.weight_decay"),
        ("train.min_lr=0.1", "train.min_lr"),
        ("train.warmup_epochs=nan", "train.warmup_epochs"),
        ("train.lr=inf", "train.lr"),
        ("diccae.lambda_conf=nan", "diccae.lambda_conf"),
        ("diccae.lambda_cls=-1", "diccae.lambda_cls"),
        ("diccae.kmeans_iters=0", "diccae.kmeans_iters"),
        ("diccae.proto_momentum=1", "diccae.proto_momentum"),
        ("diccae.min_size_entropy=2", "diccae.min_size_entropy"),
        ("model.mlp_ratio=0", "model.mlp_ratio"),
        ("model.dim=0", "model.dim"),
        ("model.proj_dim=0", "model.proj_dim"),
        ("model.norm_eps=0", "model.norm_eps"),
        ("eval.knn_k=0", "eval.knn_k"),
        ("eval.probe_epochs=0", "eval.probe_epochs"),
        (
            "data.synthetic_test_per_class=0",
            "data.synthetic_test_per_class",
        ),
        ("data.synthetic_classes=1", "data.synthetic_classes"),
        ("avcl.augment.flip_prob=1.5", "flip_prob"),
    ] {
        let err = Config::resolve(None, None, &[set.into()])
            .expect_err(set)
            .to_string();
        assert!(err.contains(key), "{set}: {err}");
    }
    // The edges of each range are accepted.
    for set in [
        "train.beta1=0",
        "train.min_lr=0.001",
        "diccae.lambda_conf=0",
        "diccae.min_size_entropy=1",
        "diccae.gate_deadline=1",
    ] {
        Config::resolve(None, None, &[set.into()]).expect(set);
    }
}
