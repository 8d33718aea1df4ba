//! The engine's half of the parity check (bench/realdata/parity.py): one
//! InfoNCE forward and backward of the freshly initialised model on the first
//! `BATCH` training clips of a `diccae-engine features` file, written out so
//! PyTorch can redo the same computation from the same weights.
//!
//! ```text
//! cargo run --release --example model_parity -- FEATURES.safetensors OUT.safetensors [BATCH]
//! ```
//!
//! OUT holds `param.<name>` (initial values, the engine's layout: linear
//! weights `[in, out]`), `grad.<name>`, `audio` and `video` (the batch),
//! `z_a`, `z_v` and `loss` `[1]`.

use std::collections::HashMap;

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::BackendCore;
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::config::Config;
use diccae_engine::model::AvModel;
use diccae_engine::ops::infonce::infonce;
use diccae_engine::tensor::Tensor;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(features), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: model_parity FEATURES.safetensors OUT.safetensors [BATCH]".into());
    };
    let batch: usize = args.get(3).map_or(Ok(128), |b| b.parse())?;
    let blob = std::fs::read(features)?;
    let (_, meta) = SafeTensors::read_metadata(&blob)?;
    let config = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .ok_or("the features file has no stored configuration")?;
    let cfg = Config::from_toml(config)?;
    let st = SafeTensors::deserialize(&blob)?;
    let audio = st.tensor("train.audio")?;
    let video = st.tensor("train.video")?;
    let (sa, sv) = (audio.shape().to_vec(), video.shape().to_vec());
    let n = batch.min(sa[0]);
    let per_a: usize = sa[1..].iter().product();
    let per_v: usize = sv[1..].iter().product();
    let a = f32s(&audio.data()[..n * per_a * 4]);
    let v = f32s(&video.data()[..n * per_v * 4]);

    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let model = AvModel::for_config(&mut store, &cfg)?;
    let mut tape = Tape::new(&store);
    let mut shape_a = vec![n];
    shape_a.extend_from_slice(&sa[1..]);
    let mut shape_v = vec![n];
    shape_v.extend_from_slice(&sv[1..]);
    let av = tape.constant(Tensor::from_host(&be, &shape_a, &a)?);
    let vv = tape.constant(Tensor::from_host(&be, &shape_v, &v)?);
    let e = model.forward(&mut tape, av, vv)?;
    let loss = infonce(&mut tape, e.z_a, e.z_v, cfg.diccae.tau)?;
    let grads = tape.backward(loss)?;

    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("audio".into(), shape_a, a),
        ("video".into(), shape_v, v),
        ("loss".into(), vec![1], tape.value(loss).to_host(&be)?),
    ];
    for (name, z) in [("z_a", e.z_a), ("z_v", e.z_v)] {
        let t = tape.value(z);
        tensors.push((name.into(), t.shape().to_vec(), t.to_host(&be)?));
    }
    for id in store.ids() {
        let p = store.get(id);
        let name = store.name(id);
        tensors.push((format!("param.{name}"), p.shape().to_vec(), p.to_host(&be)?));
        if let Some(g) = grads.param(id) {
            tensors.push((format!("grad.{name}"), p.shape().to_vec(), be.download(g)?));
        }
    }
    let raws: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, s, d)| (k, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = raws
        .iter()
        .map(|(k, s, d)| TensorView::new(Dtype::F32, s.clone(), d).map(|v| (k.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    let config_meta = HashMap::from([("config".to_string(), config.clone())]);
    std::fs::write(out, safetensors::serialize(views, Some(config_meta))?)?;
    println!(
        "wrote {out}: loss {:.6} on {n} clips",
        tape.value(loss).to_host(&be)?[0]
    );
    Ok(())
}
