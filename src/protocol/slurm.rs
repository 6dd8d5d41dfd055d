//! The sbatch script that runs a plan as a Slurm job array (`biolearn slurm`): task I runs shard
//! I/N of the grid. Every value that enters the script is checked or quoted: a path, partition or
//! time limit cannot add an `#SBATCH` line or run shell code.

use std::path::Path;

/// What the script runs (paths absolute).
pub struct SlurmJob<'a> {
    pub plan_name: &'a str,
    pub plan: &'a Path,
    pub out: &'a Path,
    pub bin: &'a Path,
    pub tasks: usize,
    pub cpus_per_task: usize,
    /// Runs at once in one task.
    pub parallel: usize,
    /// sbatch --time: minutes, or [D-]HH:MM[:SS].
    pub time: &'a str,
    pub partition: Option<&'a str>,
    /// Run the plan's search (`tune --plan`) instead of its grid (`compare`).
    pub tune: bool,
}

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_text<'p>(what: &str, p: &'p Path) -> Result<std::borrow::Cow<'p, str>, String> {
    let s = p.to_string_lossy();
    if s.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{what} {s:?}: a path with a control character (newline, tab) cannot go into a Slurm script"
        ));
    }
    Ok(s)
}

/// The script's text.
pub fn script(j: &SlurmJob) -> Result<String, String> {
    if j.tasks == 0 || j.cpus_per_task == 0 || j.parallel == 0 {
        return Err("tasks, cpus per task and runs per task must be at least 1".into());
    }
    // Past these no cluster runs the array (Slurm's MaxArraySize is far below): a typo.
    if j.tasks > 1_000_000 || j.cpus_per_task > 1024 || j.parallel > 1024 {
        return Err(format!(
            "--tasks {} / cpus per task {} / runs per task {}: at most 1000000 tasks and 1024 cpus or runs per task",
            j.tasks, j.cpus_per_task, j.parallel
        ));
    }
    let time_ok = !j.time.is_empty()
        && j.time.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-')
        && j.time.starts_with(|c: char| c.is_ascii_digit());
    if !time_ok {
        return Err(format!("--time {:?}: minutes, or [D-]HH:MM[:SS] (digits, ':' and '-')", j.time));
    }
    if let Some(p) = j.partition {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || "_.,-".contains(c)) {
            return Err(format!("--partition {p:?}: letters, digits, '_', '.', ',' and '-' only"));
        }
    }
    let (plan, bin) = (path_text("plan", j.plan)?, path_text("binary", j.bin)?);
    let out = path_text("output directory", j.out)?;
    // sbatch reads `#SBATCH --output=` itself (no shell): a plain path, '%' is its pattern sign.
    if out.chars().any(|c| c.is_whitespace() || "'\"%\\$`".contains(c)) {
        return Err(format!(
            "output directory {out:?}: Slurm's --output needs a path without spaces, quotes, '%', '$', '`' or '\\'"
        ));
    }
    // The job name is for display: anything else becomes '_'.
    let name: String =
        j.plan_name.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect();
    let partition = j.partition.map_or(String::new(), |p| format!("#SBATCH --partition={p}\n"));
    let qplan = shell_quote(&plan);
    Ok(format!(
        "#!/bin/bash\n\
         # biolearn plan {qname} as a Slurm array of {n} tasks: task I runs shard I/{n} of the {unit}.\n\
         # {merge}\n\
         #SBATCH --job-name=biolearn-{name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --ntasks=1\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --time={time}\n\
         {partition}\
         #SBATCH --output={out}/slurm-%A_%a.out\n\
         set -euo pipefail\n\
         # shellcheck disable=SC2016 # single-quoted on purpose: nothing in a value expands\n\
         exec {bin} {what} --out {qout} --parallel {par} --quiet\n",
        what = if j.tune { format!("tune --plan {qplan}") } else { format!("compare {qplan}") },
        qname = shell_quote(&name),
        unit = if j.tune { "search's entries" } else { "grid" },
        merge = if j.tune {
            format!("Then: biolearn tune --plan {qplan} --out {} writes tuned.toml there.", shell_quote(&out))
        } else {
            format!("Merge: biolearn report {} reads every results*.jsonl there.", shell_quote(&out))
        },
        n = j.tasks,
        last = j.tasks - 1,
        cpus = j.cpus_per_task,
        time = j.time,
        qout = shell_quote(&out),
        bin = shell_quote(&bin),
        par = j.parallel,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(out: &'a Path, partition: Option<&'a str>, time: &'a str, bin: &'a Path) -> SlurmJob<'a> {
        SlurmJob {
            plan_name: "p",
            plan: Path::new("/plans/p.toml"),
            out,
            bin,
            tasks: 4,
            cpus_per_task: 2,
            parallel: 2,
            time,
            partition,
            tune: false,
        }
    }

    #[test]
    fn values_are_quoted_or_refused() {
        let bin = Path::new("/opt/bio learn/biolearn");
        let s = script(&job(Path::new("/runs/p"), Some("gpu"), "04:00:00", bin)).unwrap();
        assert!(s.contains("#SBATCH --array=0-3\n") && s.contains("#SBATCH --partition=gpu\n"), "{s}");
        assert!(
            s.contains("exec '/opt/bio learn/biolearn' compare '/plans/p.toml' --out '/runs/p' --parallel 2"),
            "{s}"
        );
        // Shell code in a binary path stays one quoted word.
        let evil = Path::new("/tmp/$(touch pwned)'; rm -rf x; '");
        let s = script(&job(Path::new("/runs/p"), None, "10", evil)).unwrap();
        assert!(s.contains(r"exec '/tmp/$(touch pwned)'\''; rm -rf x; '\''' compare"), "{s}");
        // A newline in the partition or the output, a word in the time limit: refused.
        assert!(script(&job(Path::new("/runs/p"), Some("a\n#SBATCH --mem=1"), "10", bin))
            .unwrap_err()
            .contains("--partition"));
        assert!(script(&job(Path::new("/runs/p\n#SBATCH x"), None, "10", bin))
            .unwrap_err()
            .contains("control character"));
        assert!(script(&job(Path::new("/runs/$(id)"), None, "10", bin)).unwrap_err().contains("--output"));
        assert!(script(&job(Path::new("/runs/p"), None, "1; reboot", bin)).unwrap_err().contains("--time"));
        assert!(script(&job(Path::new("/runs/p"), None, "", bin)).is_err());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_script_of_hostile_values_passes_bash_n_and_shellcheck() {
        let evil = Path::new("/tmp/bio'learn $(rm -rf z) `id`; echo \"x\"");
        let s = script(&job(Path::new("/runs/p"), Some("gpu"), "1-00:00:00", evil)).unwrap();
        let f = std::env::temp_dir().join(format!("biolearn-slurm-{}.sbatch", std::process::id()));
        std::fs::write(&f, &s).unwrap();
        let st = std::process::Command::new("bash").arg("-n").arg(&f).status().unwrap();
        assert!(st.success(), "bash -n: {s}");
        match std::process::Command::new("shellcheck").arg(&f).output() {
            Ok(o) => assert!(o.status.success(), "shellcheck: {}\n{s}", String::from_utf8_lossy(&o.stdout)),
            Err(_) => assert!(
                std::env::var_os("BIOLEARN_REQUIRE_SHELLCHECK").is_none(),
                "shellcheck is required here (BIOLEARN_REQUIRE_SHELLCHECK) and not installed"
            ),
        }
        let _ = std::fs::remove_file(&f);
    }
}
