//! `lungseg-train`: synthetic data now; LUNA16 preparation, training and export later.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lungseg_train::{demo, synth};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Training harness for lungseg")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic LUNA16-like dataset (subsetN/*.mhd+.raw, annotations.csv, candidates.csv).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        scans: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scans per subsetN folder (default: all in subset0).
        #[arg(long)]
        subset_size: Option<usize>,
        #[command(flatten)]
        shape: Shape,
    },
    /// Provisional demo: synthesise a few scans, read one back, cut a patch around a nodule.
    Demo {
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        scans: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[command(flatten)]
        shape: Shape,
    },
}

/// Scan size knobs (defaults: see `lungseg_train::synth`).
#[derive(Args)]
struct Shape {
    /// In-plane voxels per axis.
    #[arg(long, default_value_t = synth::SynthConfig::default().dims_xy)]
    dims_xy: usize,
    /// Scan length along z in mm.
    #[arg(long, default_value_t = synth::SynthConfig::default().z_extent_mm)]
    z_mm: f64,
}

impl Shape {
    fn config(&self) -> synth::SynthConfig {
        synth::SynthConfig {
            dims_xy: self.dims_xy,
            z_extent_mm: self.z_mm,
            ..Default::default()
        }
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Synth {
            out,
            scans,
            seed,
            subset_size,
            shape,
        } => {
            let bar = ProgressBar::new(scans as u64).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} scans, {elapsed} (eta {eta})")
                    .expect("valid template"),
            );
            let r = synth::write_dataset(&out, &shape.config(), scans, seed, subset_size, |_| {
                bar.inc(1)
            });
            bar.finish_and_clear();
            r.map(|s| {
                println!(
                    "wrote {} scans ({} nodules, {} candidates) to {}",
                    s.scans.len(),
                    s.nodules,
                    s.candidates,
                    s.root.display()
                )
            })
        }
        Command::Demo {
            out,
            scans,
            seed,
            shape,
        } => demo::run(&out, scans, seed, &shape.config()).map(|r| println!("{r}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
