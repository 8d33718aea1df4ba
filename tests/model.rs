//! The whole model composed from the ops: its parameter gradients through the
//! DICCAE losses, and with the AMFM gate through the AVCL terms, agree with
//! finite differences, and it runs at the presets' shapes.

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::config::Config;
use diccae_engine::gradcheck::test_seed;
use diccae_engine::model::AvModel;
use diccae_engine::ops::cgra::cgra_loss;
use diccae_engine::ops::class_align::class_align;
use diccae_engine::ops::elementwise::add;
use diccae_engine::ops::infonce::infonce;
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;

fn small_config() -> Config {
    let set = |k: &str, v: &str| format!("{k}={v}");
    Config::resolve(
        None,
        None,
        &[
            set("model.dim", "12"),
            set("model.heads", "3"),
            set("model.audio_layers", "1"),
            set("model.video_layers", "1"),
            set("model.fusion_layers", "1"),
            set("model.proj_dim", "5"),
            set("model.audio_patch", "4"),
            set("model.tubelet_size", "4"),
            set("data.n_mels", "8"),
            set("data.audio_frames", "12"),
            set("data.frames", "2"),
            set("data.frame_size", "8"),
        ],
    )
    .unwrap()
}

#[test]
fn model_parameter_gradients_match_finite_differences() {
    check_model_gradients(false);
}

/// The AVCL model: the AMFM gated pooling (`h_f = α·h_a' + (1−α)·h_v'`) under
/// the fused term, and CGRA on the encoders' tokens.
#[test]
fn gated_model_parameter_gradients_match_finite_differences() {
    check_model_gradients(true);
}

/// Finite differences on three coordinates of every parameter, through
/// `infonce(z_a, z_v) + class_align(z_f)` (plus `cgra(H_a, H_v)` when gated).
fn check_model_gradients(gated: bool) {
    let seed = test_seed();
    let cfg = small_config();
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let mut model = AvModel::new(&mut store, &cfg.model, &cfg.data, seed).unwrap();
    if gated {
        model.add_gate(&mut store, seed).unwrap();
    }
    let b = 3;
    let mut rng = seeded(seed);
    // Re-draw every parameter at std 0.3: with the 0.02 initialisation the
    // small model's projections have norms ~0.005, where l2_normalize is so
    // curved that no finite-difference step is both small and above f32 noise.
    for id in store.ids().collect::<Vec<_>>() {
        let shape = store.get(id).shape().to_vec();
        let n = store.get(id).numel();
        *store.get_mut(id) = Tensor::from_host(&be, &shape, &normal_vec(&mut rng, n, 0.3)).unwrap();
    }
    let audio = normal_vec(&mut rng, b * 8 * 12, 1.0);
    let video = normal_vec(&mut rng, b * 2 * 3 * 8 * 8, 1.0);
    let protos = normal_vec(&mut rng, 4 * 5, 1.0);
    let labels = [0.0f32, 3.0, 1.0];
    let loss_of = |store: &ParamStore<CpuBackend>, record: bool| {
        let mut tape = if record {
            Tape::new(store)
        } else {
            Tape::no_grad(store)
        };
        let a = tape.constant(Tensor::from_host(&be, &[b, 8, 12], &audio).unwrap());
        let v = tape.constant(Tensor::from_host(&be, &[b, 2, 3, 8, 8], &video).unwrap());
        let e = model.forward(&mut tape, a, v).unwrap();
        let l = infonce(&mut tape, e.z_a, e.z_v, 0.5).unwrap();
        let p = Tensor::from_host(&be, &[4, 5], &protos).unwrap();
        let y = Tensor::from_host(&be, &[b], &labels).unwrap();
        let c = class_align(&mut tape, e.z_f, &p, &y, None, 0.5, None).unwrap();
        let mut total = add(&mut tape, l, c).unwrap();
        if gated {
            assert!(e.gate.is_some());
            let g = cgra_loss(&mut tape, e.tokens_a, e.tokens_v, 0.5).unwrap();
            total = add(&mut tape, total, g).unwrap();
        }
        let value = f64::from(tape.value(total).to_host(&be).unwrap()[0]);
        let grads = record.then(|| tape.backward(total).unwrap());
        (value, grads)
    };
    let (_, grads) = loss_of(&store, true);
    let grads = grads.unwrap();
    let eps = 1e-3f32;
    let mut checked = 0;
    let mut failures = Vec::new();
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        let g = grads
            .param(id)
            .unwrap_or_else(|| panic!("{name} got no gradient"))
            .clone();
        let n = g.len();
        for c in [0, n / 2, n - 1] {
            let orig = store.get(id).to_host(&be).unwrap();
            let mut plus = orig.clone();
            plus[c] += eps;
            *store.get_mut(id) = Tensor::from_host(&be, store.get(id).shape(), &plus).unwrap();
            let (lp, _) = loss_of(&store, false);
            let mut minus = orig.clone();
            minus[c] -= eps;
            *store.get_mut(id) = Tensor::from_host(&be, store.get(id).shape(), &minus).unwrap();
            let (lm, _) = loss_of(&store, false);
            *store.get_mut(id) = Tensor::from_host(&be, store.get(id).shape(), &orig).unwrap();
            let numeric = (lp - lm) / (2.0 * f64::from(eps));
            let analytic = f64::from(g[c]);
            // f32 forward through ~30 ops: absolute 2e-3 plus 5% relative.
            if (numeric - analytic).abs() > 2e-3 + 5e-2 * numeric.abs().max(analytic.abs()) {
                failures.push(format!(
                    "{name}[{c}]: analytic {analytic:.5e} numeric {numeric:.5e}"
                ));
            }
            checked += 1;
        }
    }
    assert!(
        !gated || store.ids().any(|id| store.name(id) == "fusion.gate.weight"),
        "no gate parameter checked"
    );
    assert!(
        failures.is_empty(),
        "seed {seed} (gated {gated}): {} of {checked} coordinates off:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tiny_preset_forward_shapes() {
    let cfg = Config::preset("tiny").unwrap();
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let model = AvModel::new(&mut store, &cfg.model, &cfg.data, 0).unwrap();
    let mut tape = Tape::no_grad(&store);
    let d = &cfg.data;
    let a = tape.constant(Tensor::zeros(&be, &[2, d.n_mels, d.audio_frames]).unwrap());
    let v =
        tape.constant(Tensor::zeros(&be, &[2, d.frames, 3, d.frame_size, d.frame_size]).unwrap());
    let e = model.forward(&mut tape, a, v).unwrap();
    assert_eq!(tape.shape(e.h_f), &[2, cfg.model.dim]);
    assert_eq!(tape.shape(e.z_a), &[2, cfg.model.proj_dim]);
    // Unit-norm projections.
    let z = tape.value(e.z_v).to_host(&be).unwrap();
    for row in z.chunks(cfg.model.proj_dim) {
        let n: f32 = row.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "{n}");
    }
}

#[test]
fn the_gate_exists_only_for_avcl_and_mixes_the_pooled_parts() {
    let be = CpuBackend::new();
    let names = |cfg: &Config| {
        let mut store = ParamStore::new(be.clone());
        let model = AvModel::for_config(&mut store, cfg).unwrap();
        let names: Vec<String> = store.ids().map(|id| store.name(id).to_string()).collect();
        (model, store, names)
    };
    let diccae = small_config();
    let mut avcl = diccae.clone();
    avcl.method = diccae_engine::config::Method::Avcl;
    let (plain, _, plain_names) = names(&diccae);
    let (gated, store, gated_names) = names(&avcl);
    assert!(!plain.gated() && gated.gated());
    // DICCAE checkpoints keep their keys: the gate only adds two at the end.
    assert_eq!(&gated_names[..plain_names.len()], &plain_names[..]);
    assert_eq!(
        &gated_names[plain_names.len()..],
        ["fusion.gate.weight", "fusion.gate.bias"]
    );

    let b = 4;
    let mut rng = seeded(test_seed());
    let mut tape = Tape::no_grad(&store);
    let a = tape
        .constant(Tensor::from_host(&be, &[b, 8, 12], &normal_vec(&mut rng, b * 96, 1.0)).unwrap());
    let v = tape.constant(
        Tensor::from_host(&be, &[b, 2, 3, 8, 8], &normal_vec(&mut rng, b * 384, 1.0)).unwrap(),
    );
    let e = gated.forward(&mut tape, a, v).unwrap();
    let d = diccae.model.dim;
    assert_eq!(tape.shape(e.h_f), &[b, d]);
    assert_eq!(tape.shape(e.tokens_a)[0], b);
    let gate = e.gate.unwrap();
    assert_eq!(tape.shape(gate), &[b, 1]);
    for &g in &tape.value(gate).to_host(&be).unwrap() {
        // Zero bias and 0.02-scale weights: the gate starts near ½.
        assert!((g - 0.5).abs() < 0.1, "gate {g}");
    }
}

#[test]
fn position_embeddings_follow_position_std() {
    let be = CpuBackend::new();
    let mut cfg = Config::preset("tiny").unwrap();
    // (position_std, video_position_std) → the audio and the video σ.
    for (both, video, want) in [
        (0.02f32, None, [0.02f64, 0.02]),
        (1.0, None, [1.0, 1.0]),
        (1.0, Some(0.05f32), [1.0, 0.05]),
    ] {
        cfg.model.position_std = both;
        cfg.model.video_position_std = video;
        let mut store = ParamStore::new(be.clone());
        AvModel::new(&mut store, &cfg.model, &cfg.data, 11).unwrap();
        for (name, want) in ["audio.position", "video.position"].into_iter().zip(want) {
            let p = store.get(store.id(name).unwrap()).to_host(&be).unwrap();
            let n = p.len() as f64;
            let mean = p.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = p
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = var.sqrt();
            assert!(
                (std - want).abs() < 0.05 * want,
                "{name}: std {std} vs {want}"
            );
            assert!(mean.abs() < 0.1 * want, "{name}: mean {mean}");
        }
    }
}

#[test]
fn linear_layers_follow_the_init_scheme() {
    use diccae_engine::config::InitScheme;
    let be = CpuBackend::new();
    let mut cfg = Config::preset("tiny").unwrap();
    for init in [InitScheme::Normal, InitScheme::FanIn] {
        cfg.model.init = init;
        let mut store = ParamStore::new(be.clone());
        AvModel::new(&mut store, &cfg.model, &cfg.data, 7).unwrap();
        let id = store.id("audio.blocks.0.mlp.fc2.weight").unwrap();
        let w = store.get(id);
        let fan_in = w.shape()[0];
        let w = w.to_host(&be).unwrap();
        let bias = store
            .get(store.id("audio.blocks.0.mlp.fc2.bias").unwrap())
            .to_host(&be)
            .unwrap();
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        match init {
            InitScheme::Normal => {
                assert!((std - 0.02).abs() < 0.001, "normal: std {std}");
                assert!(bias.iter().all(|&b| b == 0.0), "normal: zero biases");
            }
            InitScheme::FanIn => {
                let bound = 1.0 / (fan_in as f32).sqrt();
                // U(±b) has standard deviation b/√3.
                let want = f64::from(bound) / 3f64.sqrt();
                assert!(
                    (std - want).abs() < 0.03 * want,
                    "fan_in: std {std} vs {want}"
                );
                assert!(max <= bound, "fan_in: |w| {max} above {bound}");
                assert!(bias.iter().all(|&b| b.abs() <= bound), "fan_in: bias bound");
                assert!(bias.iter().any(|&b| b != 0.0), "fan_in: biases drawn");
            }
        }
    }
}
