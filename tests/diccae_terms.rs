//! One DICCAE step's objective computed on the embeddings
//! (`train::diccae_terms`): its gradient at z_a, z_v, z_f against finite
//! differences of its loss, and the cap on the cluster terms' share
//! (`diccae.cluster_grad_ratio`) against the uncapped gradient split into
//! its instance and cluster parts.

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::kmeans::KMeansConfig;
use diccae_engine::ops::matmul::matmul;
use diccae_engine::ops::norm::l2_normalize;
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;
use diccae_engine::train::clusters::{ClusterState, RoundInput};
use diccae_engine::train::diccae_terms::{ClusterBatch, StepTerms, TermWeights, diccae_terms};

/// Embedding width; batch rows; rows the cluster terms train on; clips.
const P: usize = 6;
const B: usize = 13;
const CONFIDENT: usize = 9;
const CLIPS: usize = 37;

fn unit_rows(rows: usize, seed: u64) -> Vec<f32> {
    let mut x = normal_vec(&mut seeded(seed), rows * P, 1.0);
    for r in x.chunks_mut(P) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= n);
    }
    x
}

/// A cluster state over `CLIPS` random clips (K = 3, every clip confident).
fn clusters(be: &CpuBackend) -> ClusterState<CpuBackend> {
    let z = [
        unit_rows(CLIPS, 1),
        unit_rows(CLIPS, 2),
        unit_rows(CLIPS, 3),
    ];
    let input = RoundInput {
        space: &z[0],
        modalities: [&z[0], &z[1], &z[2]],
        truth: None,
        keep_fraction: 1.0,
    };
    let km = KMeansConfig {
        k: 3,
        iters: 10,
        seed: 4,
    };
    ClusterState::recluster(None, be, &input, P, &km, 0).unwrap()
}

/// The batch's training-set indices: its first `CONFIDENT` rows train the
/// cluster terms.
fn batch_idx() -> Vec<usize> {
    (0..CONFIDENT).map(|i| (i * 4 + 1) % CLIPS).collect()
}

fn weights(ratio: f32, clusters_on: bool) -> TermWeights {
    TermWeights {
        tau: 0.07,
        tau_c: 0.1,
        lambda_fused: 0.5,
        lambda_cls: if clusters_on { 0.8 } else { 0.0 },
        lambda_conf: if clusters_on { 1.3 } else { 0.0 },
        cluster_grad_ratio: ratio,
    }
}

fn terms(
    be: &CpuBackend,
    state: &mut ClusterState<CpuBackend>,
    z: &[Vec<f32>; 3],
    w: &TermWeights,
) -> StepTerms<CpuBackend> {
    let store = ParamStore::new(be.clone());
    let t = z
        .clone()
        .map(|x| Tensor::from_host(be, &[B, P], &x).unwrap());
    let idx = batch_idx();
    let batch = ClusterBatch { state, idx: &idx };
    diccae_terms(&store, [&t[0], &t[1], &t[2]], w, Some(batch)).unwrap()
}

fn grads(t: &StepTerms<CpuBackend>) -> Vec<Vec<f32>> {
    t.grads
        .iter()
        .map(|g| g.clone().expect("every embedding has a gradient"))
        .collect()
}

fn norm(g: &[Vec<f32>]) -> f64 {
    g.iter()
        .flatten()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn the_embedding_gradient_matches_finite_differences_of_the_loss() {
    let be = CpuBackend::new();
    let mut state = clusters(&be);
    let z = [unit_rows(B, 10), unit_rows(B, 11), unit_rows(B, 12)];
    // L_fus reads z_a and z_v as stop-gradient targets, which a finite
    // difference of the loss would differentiate: it is off here.
    let w = TermWeights {
        lambda_fused: 0.0,
        ..weights(0.0, true)
    };
    let base = terms(&be, &mut state, &z, &w);
    assert!(base.cls.is_some() && base.conf.is_some() && base.fused.is_none());
    assert_eq!(base.cluster_scale, Some(1.0), "no cap");
    let g = grads(&base);
    let eps = 3e-3f32;
    let mut rng = seeded(20);
    for m in 0..3 {
        for _ in 0..6 {
            let i = rand::Rng::random_range(&mut rng, 0..B * P);
            let mut plus = z.clone();
            plus[m][i] += eps;
            let mut minus = z.clone();
            minus[m][i] -= eps;
            let lp = terms(&be, &mut state, &plus, &w).loss;
            let lm = terms(&be, &mut state, &minus, &w).loss;
            let fd = (lp - lm) / (2.0 * f64::from(eps));
            let an = f64::from(g[m][i]);
            assert!(
                (fd - an).abs() <= 2e-3 + 2e-2 * an.abs(),
                "embedding {m}, entry {i}: analytic {an}, finite difference {fd}"
            );
        }
    }
}

#[test]
fn the_cap_scales_only_the_cluster_terms_and_keeps_their_direction() {
    let be = CpuBackend::new();
    let mut state = clusters(&be);
    let z = [unit_rows(B, 30), unit_rows(B, 31), unit_rows(B, 32)];
    let instance = grads(&{
        let store = ParamStore::new(be.clone());
        let t = z
            .clone()
            .map(|x| Tensor::from_host(&be, &[B, P], &x).unwrap());
        diccae_terms(&store, [&t[0], &t[1], &t[2]], &weights(0.0, false), None).unwrap()
    });
    let full = grads(&terms(&be, &mut state, &z, &weights(0.0, true)));
    let cluster: Vec<Vec<f32>> = full
        .iter()
        .zip(&instance)
        .map(|(f, i)| f.iter().zip(i).map(|(a, b)| a - b).collect())
        .collect();
    let (n_ins, n_clu) = (norm(&instance), norm(&cluster));
    assert!(n_clu > 0.0 && n_ins > 0.0);
    for ratio in [0.05f32, 0.3, 1e6] {
        let capped = terms(&be, &mut state, &z, &weights(ratio, true));
        let expect_scale = (f64::from(ratio) * n_ins / n_clu).min(1.0);
        let s = capped.cluster_scale.expect("the cluster terms trained");
        assert!(
            (s - expect_scale).abs() <= 1e-4 * expect_scale.max(1e-3),
            "ratio {ratio}: scale {s}, expected {expect_scale}"
        );
        let got = grads(&capped);
        for m in 0..3 {
            for i in 0..B * P {
                let want = instance[m][i] + s as f32 * cluster[m][i];
                assert!(
                    (got[m][i] - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                    "ratio {ratio}, embedding {m}, entry {i}: {} vs {want}",
                    got[m][i]
                );
            }
        }
        if expect_scale < 1.0 {
            let share: Vec<Vec<f32>> = got
                .iter()
                .zip(&instance)
                .map(|(g, i)| g.iter().zip(i).map(|(a, b)| a - b).collect())
                .collect();
            let r = norm(&share) / n_ins;
            assert!(
                (r - f64::from(ratio)).abs() < 1e-3,
                "ratio {ratio}: the cluster share is {r} of L_ins's"
            );
        }
    }
}

#[test]
fn gradients_from_several_outputs_add_up() {
    // y1 = normalize(x·W), y2 = x·W: seeding both at once equals the sum of
    // the two backward passes.
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let wv = normal_vec(&mut seeded(40), 5 * 3, 1.0);
    let w = store
        .add("w", Tensor::from_host(&be, &[5, 3], &wv).unwrap(), true)
        .unwrap();
    let x = normal_vec(&mut seeded(41), 7 * 5, 1.0);
    let mut tape = Tape::new(&store);
    let xv = tape.constant(Tensor::from_host(&be, &[7, 5], &x).unwrap());
    let wvar = tape.param(w);
    let y2 = matmul(&mut tape, xv, wvar, false, false).unwrap();
    let y1 = l2_normalize(&mut tape, y2, 1e-6).unwrap();
    let s1 = normal_vec(&mut seeded(42), 21, 1.0);
    let s2 = normal_vec(&mut seeded(43), 21, 1.0);
    let g1 = tape.backward_with_seed(y1, s1.clone()).unwrap();
    let g2 = tape.backward_with_seed(y2, s2.clone()).unwrap();
    let both = tape.backward_from(vec![(y1, s1), (y2, s2)]).unwrap();
    let (a, b, ab) = (
        g1.param(w).unwrap(),
        g2.param(w).unwrap(),
        both.param(w).unwrap(),
    );
    for i in 0..15 {
        assert!(
            (a[i] + b[i] - ab[i]).abs() <= 1e-5 * (1.0 + ab[i].abs()),
            "entry {i}: {} + {} vs {}",
            a[i],
            b[i],
            ab[i]
        );
    }
    let err = tape.backward_from(vec![(y1, vec![1.0; 3])]).err().unwrap();
    assert!(err.to_string().contains("seed gradient"), "{err}");
}
