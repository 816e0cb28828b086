use clap::{Parser, Subcommand};

/// lungseg training harness.
#[derive(Parser)]
#[command(name = "lungseg-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train(lungseg_train::train::args::TrainArgs),
    Export(lungseg_train::export::ExportArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(args) => args.run(),
        Command::Export(args) => args.run(),
    }
}
