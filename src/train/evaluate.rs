//! Evaluation of an encoder on a dataset (METHOD.md §5): linear probes per
//! modality, kNN, retrieval and confusion diagnostics.

use crate::autograd::ParamStore;
use crate::backend::cpu::CpuBackend;
use crate::config::{Config, EvalConfig};
use crate::error::Result;
use crate::eval::knn::{cosine_similarity, knn_predict, l2_rows};
use crate::eval::metrics::{nmi, recall_at_k};
use crate::eval::probe::{ProbeConfig, linear_probe};
use crate::eval::scores::{
    Evaluation, KnnScores, KnnTop1, PairScore, ProbeScores, Recall, RetrievalScores, TopK,
};
use crate::kmeans::{KMeansConfig, kmeans};
use crate::model::AvModel;
use crate::ops::Backend;
use crate::tensor::Tensor;
use crate::train::embed::{SplitEmbeddings, embed_split};
use crate::train::features::{Dataset, InputShapes};

fn pair_score(a: usize, b: usize, truth: &[usize], pred: &[usize], names: &[String]) -> PairScore {
    let (mut total, mut swapped, mut within, mut within_ok) = (0usize, 0usize, 0usize, 0usize);
    for (&t, &p) in truth.iter().zip(pred) {
        if t != a && t != b {
            continue;
        }
        total += 1;
        let other = if t == a { b } else { a };
        if p == other {
            swapped += 1;
        }
        if p == a || p == b {
            within += 1;
            if p == t {
                within_ok += 1;
            }
        }
    }
    PairScore {
        a,
        b,
        names: format!(
            "{} / {}",
            names.get(a).map_or("?", String::as_str),
            names.get(b).map_or("?", String::as_str)
        ),
        confusion_rate: swapped as f64 / total.max(1) as f64,
        pair_accuracy: within_ok as f64 / within.max(1) as f64,
    }
}

fn recall(sim: &[f32], n: usize) -> Recall {
    Recall {
        r1: recall_at_k(sim, n, 1),
        r5: recall_at_k(sim, n, 5),
        r10: recall_at_k(sim, n, 10),
    }
}

/// Evaluates embeddings of the training and test splits.
pub fn evaluate(
    data: &Dataset,
    train: &SplitEmbeddings,
    test: &SplitEmbeddings,
    dim: usize,
    proj_dim: usize,
    cfg: &EvalConfig,
) -> Result<Evaluation> {
    let n_test = data.test.len();
    let a2v = cosine_similarity(&test.z_a, &test.z_v, proj_dim)?;
    let v2a = cosine_similarity(&test.z_v, &test.z_a, proj_dim)?;
    let mut ev = Evaluation {
        retrieval: RetrievalScores {
            audio_to_video: recall(&a2v, n_test),
            video_to_audio: recall(&v2a, n_test),
        },
        ..Evaluation::default()
    };
    let (Some(ytr), Some(yte)) = (&data.train.labels, &data.test.labels) else {
        return Ok(ev);
    };
    let classes = data.classes.len();
    let probe_cfg = ProbeConfig {
        steps: cfg.probe_epochs,
        lr: cfg.probe_lr,
        weight_decay: cfg.probe_weight_decay,
    };
    let probe = |tr: &[f32], te: &[f32]| linear_probe(tr, ytr, te, yte, dim, classes, &probe_cfg);
    let audio = probe(&train.h_a, &test.h_a)?;
    let video = probe(&train.h_v, &test.h_v)?;
    let fused = probe(&train.h_f, &test.h_f)?;
    let top = |r: &crate::eval::probe::ProbeResult| TopK {
        top1: r.top1,
        top5: r.top5,
    };
    ev.linear_probe = Some(ProbeScores {
        audio: top(&audio),
        video: top(&video),
        fused: top(&fused),
    });
    let knn_pred = knn_predict(&train.h_f, ytr, &test.h_f, dim, classes, cfg.knn_k)?;
    let knn_top1 =
        knn_pred.iter().zip(yte).filter(|(p, t)| p == t).count() as f64 / n_test.max(1) as f64;
    ev.knn = Some(KnnScores {
        fused: KnnTop1 { top1: knn_top1 },
    });

    let pred = &fused.predictions;
    let mut counts = vec![0.0f64; classes * classes];
    for (&t, &p) in yte.iter().zip(pred) {
        counts[t * classes + p] += 1.0;
    }
    for row in counts.chunks_exact_mut(classes) {
        let s: f64 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    ev.confusion_matrix = counts;
    let be = CpuBackend::new();
    let feats = Tensor::from_host(&be, &[n_test, dim], &l2_rows(&test.h_f, dim))?;
    if n_test >= classes {
        let km = kmeans(
            &be,
            &feats,
            &KMeansConfig {
                k: classes,
                iters: 20,
                seed: 0,
            },
        )?;
        let labels: Vec<usize> = km
            .labels
            .to_host(&be)?
            .iter()
            .map(|&l| l as usize)
            .collect();
        ev.kmeans_nmi = Some(nmi(&labels, yte));
    }
    let mut pairs: Vec<PairScore> = (0..classes)
        .flat_map(|a| ((a + 1)..classes).map(move |b| (a, b)))
        .map(|(a, b)| pair_score(a, b, yte, pred, &data.classes))
        .filter(|p| p.confusion_rate > 0.0)
        .collect();
    pairs.sort_by(|x, y| y.confusion_rate.total_cmp(&x.confusion_rate));
    pairs.truncate(5);
    ev.most_confused = pairs;
    ev.known_pairs = data
        .confusable_pairs
        .iter()
        .map(|&(a, b)| pair_score(a, b, yte, pred, &data.classes))
        .collect();
    if !ev.known_pairs.is_empty() {
        ev.known_pairs_accuracy = Some(
            ev.known_pairs.iter().map(|p| p.pair_accuracy).sum::<f64>()
                / ev.known_pairs.len() as f64,
        );
    }
    Ok(ev)
}

/// Embeds both splits of `data` with the model (no gradients, no
/// augmentation) and evaluates the embeddings.
pub fn evaluate_model<B: Backend>(
    model: &AvModel,
    store: &ParamStore<B>,
    data: &Dataset,
    cfg: &Config,
) -> Result<Evaluation> {
    let shapes = InputShapes::of(cfg);
    let b = cfg.train.batch_size.max(1);
    let embed = |set| embed_split(model, store, set, b, (&shapes.audio, &shapes.video));
    let (train, test) = (embed(&data.train)?, embed(&data.test)?);
    evaluate(
        data,
        &train,
        &test,
        cfg.model.dim,
        cfg.model.proj_dim,
        &cfg.eval,
    )
}
