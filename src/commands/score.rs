//! `gcse score`: a model's score of each sentence pair of a file (a
//! cross-encoder's sigmoid of its logit, a bi-encoder's cosine).

use burn::tensor::backend::AutodiffBackend;

use crate::backend::BackendTask;
use crate::cli::ScoreArgs;
use crate::embed::pairs::score_pairs;
use crate::error::Result;
use crate::eval::pair_scores::read_pairs;
use crate::json_file::write_jsonl;

/// `gcse score` on a chosen backend.
pub struct ScoreTask {
    /// The command line.
    pub args: ScoreArgs,
}

/// One scored pair, as written.
#[derive(serde::Serialize)]
struct Scored<'a> {
    a: &'a str,
    b: &'a str,
    score: f64,
}

impl BackendTask for ScoreTask {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let args = self.args;
        let (pairs, _) = read_pairs(&args.input, &[])?;
        let start = std::time::Instant::now();
        let scores = score_pairs::<B::InnerBackend>(
            &args.model.model,
            args.model.pooling,
            args.model.max_len,
            &pairs.a,
            &pairs.b,
            args.model.batch_size,
            &device,
        )?;
        let scored: Vec<Scored> = pairs
            .a
            .iter()
            .zip(&pairs.b)
            .zip(scores)
            .map(|((a, b), score)| Scored { a, b, score })
            .collect();
        match &args.output {
            Some(path) => {
                write_jsonl(path, &scored)?;
                eprintln!(
                    "{} pairs in {:.1} s → {}",
                    scored.len(),
                    start.elapsed().as_secs_f64(),
                    path.display()
                );
            }
            None => {
                for s in &scored {
                    println!("{}", serde_json::to_string(s).expect("a pair serialises"));
                }
            }
        }
        Ok(())
    }
}
