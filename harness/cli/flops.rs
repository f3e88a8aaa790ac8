//! `diffscale flops`: parameters and compute of any model config, in every convention.

use crate::compute::{budget, Convention, DitConfig, MicroDitConfig, ModelConfig, PixArtConfig, UnetConfig};
use crate::fit::fmt_num;
use crate::suite::yaml::{parse_str, Files};
use clap::Args;
use serde_json::Value;
use std::path::Path;

#[derive(Args, Debug)]
pub struct FlopsArgs {
    /// A preset (dit-s/2 … dit-xl/8, sd15, sd2, sdxl, pixart-alpha-xl/2, microdit-xl/2), an
    /// inline YAML mapping ('{family: dit, depth: 12, hidden: 384, heads: 6, patch: 4}'), or
    /// @FILE with such a mapping.
    pub model: String,
    /// Override one field, e.g. --set channels=64 --set transformer_depth=[0,4,4].
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// Also print training compute for this batch size (needs --steps).
    #[arg(long)]
    pub batch: Option<f64>,
    /// Training steps (with --batch) or sampler steps (alone).
    #[arg(long)]
    pub steps: Option<f64>,
    /// Sampling cost counts classifier-free guidance's second evaluation.
    #[arg(long)]
    pub guided: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn preset(name: &str) -> Option<ModelConfig> {
    let n = name.to_ascii_lowercase();
    if let Some(rest) = n.strip_prefix("dit-") {
        let (size, p) = rest.split_once('/')?;
        return DitConfig::named(&size.to_ascii_uppercase(), p.parse().ok()?).map(ModelConfig::Dit);
    }
    Some(match n.as_str() {
        "sd15" | "sd1.5" => ModelConfig::Unet(UnetConfig::sd15()),
        "sd2" => ModelConfig::Unet(UnetConfig::sd2()),
        "sdxl" => ModelConfig::Unet(UnetConfig::sdxl()),
        "microdit-xl/2" => ModelConfig::Microdit(MicroDitConfig::xl2()),
        "pixart-alpha-xl/2" => ModelConfig::Pixart(PixArtConfig {
            depth: 28,
            hidden: 1152,
            heads: 16,
            patch: 2,
            input_size: 32,
            in_channels: 4,
            learn_sigma: true,
            caption_channels: 4096,
            caption_tokens: 120,
            caption_embedding: true,
            mlp_ratio: 4.0,
        }),
        _ => return None,
    })
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value, String> {
    let node = parse_str(text, Path::new(origin), 0).map_err(|e| e.to_string())?;
    Ok(node.to_json())
}

fn config(args: &FlopsArgs) -> Result<ModelConfig, String> {
    let mut v: Value = if let Some(p) = preset(&args.model) {
        serde_json::to_value(p).expect("serializable")
    } else if let Some(file) = args.model.strip_prefix('@') {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: cannot read ({e})"))?;
        parse_yaml(&text, file)?
    } else if args.model.trim_start().starts_with('{') || args.model.contains(':') {
        parse_yaml(&args.model, "<model>")?
    } else {
        return Err(format!(
            "unknown model `{}`: give a preset (dit-xl/2, sd15, sd2, sdxl, pixart-alpha-xl/2, microdit-xl/2), \
             an inline YAML mapping with `family:`, or @FILE",
            args.model
        ));
    };
    for s in &args.set {
        let (k, val) = s.split_once('=').ok_or(format!("--set takes FIELD=VALUE, not `{s}`"))?;
        let parsed = parse_yaml(&format!("v: {val}"), "<--set>")?["v"].clone();
        v.as_object_mut().ok_or("the model must be a mapping")?.insert(k.trim().to_string(), parsed);
    }
    let files = Files { paths: vec!["<model>".into()] };
    let node =
        parse_str(&serde_json::to_string(&v).expect("json"), Path::new("<model>"), 0).map_err(|e| e.to_string())?;
    let m: ModelConfig = crate::suite::load::typed(&files, &node).map_err(|e| e.to_string())?;
    if let Some((field, msg)) = m.validate().into_iter().next() {
        return Err(format!("{field} {msg}"));
    }
    Ok(m)
}

pub fn run(args: FlopsArgs) -> Result<i32, String> {
    let m = config(&args)?;
    let tally = m.count();
    let total = tally.total();
    let forward: Vec<(Convention, f64)> = Convention::ALL.iter().map(|c| (*c, c.forward(&total, None))).collect();
    let training = match (args.batch, args.steps) {
        (Some(b), Some(s)) => Some((b, s)),
        (Some(_), None) => return Err("--batch needs --steps".into()),
        _ => None,
    };
    if args.json {
        let out = serde_json::json!({
            "model": m,
            "params": total.params,
            "frozen_params": total.frozen,
            "forward": forward.iter().map(|(c, v)| (serde_json::to_value(c).expect("enum").as_str().unwrap_or("?").to_string(), *v)).collect::<std::collections::BTreeMap<String, f64>>(),
            "parts": tally.breakdown().iter().map(|(n, c)| serde_json::json!({"part": n, "params": c.params, "macs": c.macs})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(0);
    }
    println!("params: {} trainable ({}M), {} frozen", total.params, fmt_num(total.params as f64 / 1e6), total.frozen);
    println!("\nforward pass, one sample:");
    for (c, v) in &forward {
        println!("  {:>12} G  {}", fmt_num(v / 1e9), c.label());
    }
    println!("\nby part:");
    for (name, c) in tally.breakdown() {
        let macs = Convention::Macs.forward(&c, None);
        println!("  {name:<10} {:>10}M params  {:>12} GMACs", fmt_num(c.params as f64 / 1e6), fmt_num(macs / 1e9));
    }
    if let Some((b, s)) = training {
        println!("\ntraining, 3 × forward × batch {} × steps {}:", fmt_num(b), fmt_num(s));
        for (c, v) in &forward {
            println!("  {:>12}  {}", fmt_num(budget::training_compute(*v, b, s)), c.label());
        }
    } else if let Some(s) = args.steps {
        println!(
            "\nsampling, {} steps{}:",
            fmt_num(s),
            if args.guided { " with guidance (2 evaluations per step)" } else { "" }
        );
        for (c, v) in &forward {
            println!("  {:>12} G  {}", fmt_num(budget::sampling_cost(*v, s, args.guided) / 1e9), c.label());
        }
    }
    Ok(0)
}
