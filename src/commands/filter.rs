//! `gcse filter`: candidates in, triplets and a report out, scored by a
//! frozen stage-1 model.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::cli::FilterArgs;
use crate::error::Result;
use crate::json_file::{write_json, write_jsonl};
use crate::model::pooling::Pooling;
use crate::objective::registry;
use crate::objective::teacher::{Teacher, TeacherSpec};
use crate::run_dir::RunDir;
use crate::triplets::candidates::{read_all, CandidateSpec};
use crate::triplets::filter::{score, select};

/// `gcse filter` on a chosen backend.
pub struct FilterTask {
    /// The command line.
    pub args: FilterArgs,
}

/// The report's path: `triplets.jsonl` → `triplets.report.json`.
pub fn report_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map_or("triplets".into(), |s| s.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}.report.json"))
}

impl BackendTask for FilterTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.args;
        let rule = args.rule()?;
        let spec = CandidateSpec {
            path: args.input.to_string_lossy().into_owned(),
            format: args.input_format,
            splits: args.splits.clone(),
            origin: args.origin,
            on_bad_line: args.on_bad_line,
        };
        let set = read_all(&[spec])?;
        eprintln!(
            "candidates: {} sources from {}",
            set.groups.len(),
            args.input.display()
        );
        let scores = if rule.needs_scores() {
            // A run directory scores with its training pooling and length.
            let run = RunDir::new(&args.model);
            let run = run
                .holds_run()
                .then(|| registry::read(&run.config()))
                .transpose()?;
            let pooling = args
                .pooling
                .or(run.as_ref().map(|c| c.model.pooling))
                .unwrap_or(Pooling::Cls);
            let max_len = args.max_len.or(run.as_ref().map(|c| c.model.max_len));
            let frozen = Teacher::<B>::load(
                &TeacherSpec {
                    path: args.model.clone(),
                    pooling,
                    max_len,
                    dropout: 0.0,
                },
                &device,
            )?;
            eprintln!("frozen model: {}, pooling {pooling}", args.model);
            Some(score(&set.groups, &frozen.embedder(args.batch_size))?)
        } else {
            None
        };
        let (triplets, mut report) = select(&set.groups, scores.as_deref(), &rule, args.seed)?;
        report.skipped_lines = set.skipped;
        write_jsonl(&args.output, &triplets)?;
        let report_file = report_path(&args.output);
        write_json(&report_file, &report)?;
        print!("{report}");
        println!(
            "wrote {} ({} triplets) and {}",
            args.output.display(),
            triplets.len(),
            report_file.display()
        );
        Ok(())
    }
}
