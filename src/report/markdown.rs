//! `report.md`: a run's results for people, with its plots.

use std::fmt::Write as _;

use crate::report::summary::Summary;

/// The Markdown report of `s`.
pub fn render_report(s: &Summary) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# diccae-engine run report\n");
    let _ = writeln!(
        r,
        "Method **{}**, preset **{}**, data: {} ({} train / {} test clips, {} skipped), {} epochs, {:.0} s, {} parameters.\n",
        s.method,
        s.preset,
        s.dataset,
        s.train_clips,
        s.test_clips,
        s.skipped_clips,
        s.epochs,
        s.seconds,
        s.parameters
    );
    let _ = writeln!(r, "## Results (test split)\n\n```text\n{}```\n", s.table());
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    if let Some(p) = s.eval.linear_probe {
        let _ = writeln!(r, "| linear probe | top-1 | top-5 |\n|---|---|---|");
        for (n, t) in [("audio", p.audio), ("video", p.video), ("fused", p.fused)] {
            let _ = writeln!(r, "| {n} | {} | {} |", pct(t.top1), pct(t.top5));
        }
        let _ = writeln!(r);
    } else {
        let _ = writeln!(r, "The data has no labels: probes and kNN were not run.\n");
    }
    let rt = s.eval.retrieval;
    let _ = writeln!(r, "| retrieval | R@1 | R@5 | R@10 |\n|---|---|---|---|");
    for (n, x) in [
        ("audio → video", rt.audio_to_video),
        ("video → audio", rt.video_to_audio),
    ] {
        let _ = writeln!(
            r,
            "| {n} | {} | {} | {} |",
            pct(x.r1),
            pct(x.r5),
            pct(x.r10)
        );
    }
    let _ = writeln!(r);
    if !s.eval.most_confused.is_empty() {
        let _ = writeln!(
            r,
            "## Most confused class pairs (fused probe)\n\n| pair | confusion rate | pair accuracy |\n|---|---|---|"
        );
        for p in &s.eval.most_confused {
            let _ = writeln!(
                r,
                "| {} | {} | {} |",
                p.names,
                pct(p.confusion_rate),
                pct(p.pair_accuracy)
            );
        }
        let _ = writeln!(r);
    }
    if !s.eval.known_pairs.is_empty() {
        let _ = writeln!(
            r,
            "## Known confusable pairs\n\n| pair | pair accuracy | random init |\n|---|---|---|"
        );
        for (i, p) in s.eval.known_pairs.iter().enumerate() {
            let base = s
                .random_init
                .known_pairs
                .get(i)
                .map_or("-".into(), |b| pct(b.pair_accuracy));
            let _ = writeln!(r, "| {} | {} | {base} |", p.names, pct(p.pair_accuracy));
        }
        let _ = writeln!(r);
    }
    if !s.clustering.epochs.is_empty() {
        let _ = writeln!(
            r,
            "## Clustering rounds\n\nRounds before the cluster terms start only observe: their pseudo-labels train nothing.\n\n| epoch | cluster terms | NMI | ARI | Hungarian acc. | purity | size entropy |\n|---|---|---|---|---|---|---|"
        );
        for i in 0..s.clustering.epochs.len() {
            let g = |v: &Vec<f64>| v.get(i).map_or("-".into(), |x| format!("{x:.3}"));
            let epoch = s.clustering.epochs[i];
            let terms = match s.clustering.terms_from_epoch {
                Some(from) if epoch >= from => "training",
                _ => "observed",
            };
            let _ = writeln!(
                r,
                "| {epoch} | {terms} | {} | {} | {} | {} | {} |",
                g(&s.clustering.nmi),
                g(&s.clustering.ari),
                g(&s.clustering.accuracy),
                g(&s.clustering.purity),
                g(&s.clustering.size_entropy)
            );
        }
        let _ = writeln!(r);
    } else if s.method == "avcl" {
        let _ = writeln!(
            r,
            "AVCL trains without clustering rounds (SelfCL + cross-modal L_ins + CGRA).\n"
        );
    } else {
        let _ = writeln!(
            r,
            "No clustering round ran (the cluster terms were off, or L_ins never left chance).\n"
        );
    }
    if let Some(w) = s.weights {
        let _ = writeln!(
            r,
            "Final W: largest off-diagonal {:.3}, mean off-diagonal {:.3}.\n",
            w.max, w.mean_offdiag
        );
    }
    let _ = writeln!(r, "## Plots\n\n![losses](plots/losses.png)\n");
    if !s.clustering.epochs.is_empty() {
        let _ = writeln!(r, "![clustering](plots/clustering.png)\n");
    }
    if !s.eval.confusion_matrix.is_empty() {
        let _ = writeln!(r, "![confusion](plots/confusion.png)\n");
    }
    if s.weight_matrix.is_some() {
        let _ = writeln!(r, "![W](plots/weights.png)\n");
    }
    r
}
