# SPDX-License-Identifier: MIT
"""The one table of afarmctl verbs: argparse, --help and man/afarmctl.1 are all made from it."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Arg:
    names: tuple[str, ...]
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verb:
    name: str
    summary: str
    description: str
    args: tuple[Arg, ...] = ()
    example: str = ""


JOB = Arg(("job",), "the job's number (see afarmctl jobs)", {"type": int})

VERBS: tuple[Verb, ...] = (
    Verb("submit", "submit a job",
         "Upload the input file (once: the master keeps files by sha256) and submit a job. "
         "Blender jobs render FILE.blend with scripts in the file disabled; command "
         "applications run once per item. "
         "A .blend is traced first (blender-asset-tracer): the libraries it links and theirs,"
         " images with UDIM tiles and sequences, movie clips, sounds, fonts, caches,"
         " volumes and sequencer strips are carried with it at their places relative to the"
         " project root, .blend copies get //relative paths where needed, and only files the"
         " master lacks are uploaded. A missing file is listed with the datablock that"
         " wants it and stops the submission (exit 1) unless --allow-missing; a truncated or"
         " corrupt .blend is refused (exit 2) before anything is uploaded.",
         (Arg(("file",), "the input file (a .blend for Blender jobs)", {"nargs": "?"}),
          Arg(("--with",), "another input the job needs (a texture, a linked .blend, a"
              " directory of them) that tracing cannot see, e.g. a path a driver or script"
              " builds: it reaches the slave at the same path relative to the project root"
              " (for a .blend) or to FILE; repeat for more", {"action": "append", "default": [],
                                                      "dest": "extra", "metavar": "PATH"}),
          Arg(("--app",), "application name (default: blender), optionally with a version"
              " constraint written like a Debian dependency, e.g. 'blender (>= 4.2),"
              " blender (<< 5)': the job runs the newest pool version that satisfies it"
              " (without one, the newest in the pool), fixed at submit and shown by"
              " status; refused when none does", {"default": "blender"}),
          Arg(("--name",), "job name (default: the file name)", {}),
          Arg(("--frames",), "frames: 1-240, 1,5,10-20 or 1-100x5 (every 5th)", {}),
          Arg(("--chunk",), "frames per task (default 1)", {"type": int}),
          Arg(("--tiles",), "split each frame into COLSxROWS tiles, e.g. 2x2", {}),
          Arg(("--engine",), "CYCLES, BLENDER_EEVEE or BLENDER_WORKBENCH (default: the"
              " engine the file is set up with)", {}),
          Arg(("--format",), "PNG or OPEN_EXR", {}),
          Arg(("--encode",), "encode the frames into a video: mp4", {"choices": ["mp4"]}),
          Arg(("--fps",), "frames per second of the video (default 24)", {"type": int}),
          Arg(("--scene",), "the scene to render (default: the file's active scene)", {}),
          Arg(("--items",), "comma-separated items for a command application", {}),
          Arg(("--items-file",), "file with one item a line for a command application", {}),
          Arg(("--priority",), "0 to 100, higher runs first (default 50)", {"type": int}),
          Arg(("--timeout",), "seconds a task may run (default: the application's)",
              {"type": int}),
          Arg(("--strict",), "a task warning (a file the .blend needs is missing on the"
              " slave, the denoiser is off) fails the job instead of ending it"
              " completed-with-warnings", {"action": "store_true"}),
          Arg(("--require-tag",), "only slaves with this tag (see tags in a slave's"
              " definition) may take the job's tasks; repeat for more",
              {"action": "append", "default": [], "dest": "require_tags", "metavar": "TAG"}),
          Arg(("--policy",), "rank slaves for this job by this policy instead of the"
              " master's: fastest, cheapest, greenest, lexicographic, weighted, pareto,"
              " cheapest-within-deadline or one of the master's [policies] (see afarmctl"
              " slaves --rank)", {"metavar": "NAME"}),
          Arg(("--deadline",), "when the job must be done: a duration from now (90m, 2h,"
              " 1d, or seconds) or a local time (2026-12-24T18:00); with --policy"
              " cheapest-within-deadline the job uses the cheapest slaves that make it",
              {"metavar": "WHEN"}),
          Arg(("--min-memory",), "only slaves with at least this much memory, in MiB",
              {"type": int, "dest": "min_memory_mib", "metavar": "MIB"}),
          Arg(("--gpus",), "only slaves with at least this many GPUs", {"type": int}),
          Arg(("--device",), "render on CPU (the default) or GPU: a GPU job's tasks each"
              " take one of a slave's GPU slots (one per GPU, besides its CPU slots) and"
              " are pinned to that device (CUDA_VISIBLE_DEVICES, the Cycles device)",
              {"choices": ["CPU", "GPU"], "type": str.upper}),
          Arg(("--wait",), "wait for the job and show its progress",
              {"action": "store_true"}),
          Arg(("--project-root",), "for a .blend: carry the project from this directory"
              " (default: the nearest directory holding FILE and every file it needs); each"
              " file keeps its path relative to it, files outside it go to _outside/",
              {"metavar": "DIR"}),
          Arg(("--dry-run",), "for a .blend: list the files the job would carry (sizes,"
              " which the master lacks, missing ones with the datablock that wants them)"
              " and submit nothing", {"action": "store_true"}),
          Arg(("--allow-missing",), "submit even when files FILE needs are missing (they"
              " are listed, and the render shows them missing); without it a missing file"
              " stops the submission with exit 1", {"action": "store_true"})),
         "afarmctl submit shot.blend --frames 1-240 --chunk 4 --encode mp4"),
    Verb("jobs", "list jobs", "List the master's jobs, newest first, with their progress,"
         " energy (kWh) and cost; ? where a slave's watts or the price are unknown. The"
         " master sends a page of the 200 newest jobs; when there are more, a last line"
         " says how many and how to list the rest (with --json on stderr: the JSON stays a"
         " list of jobs).",
         (Arg(("--all",), "list every job: follow the master's pages to the oldest one",
              {"action": "store_true", "dest": "every"}),
          Arg(("--before",), "only jobs older than job ID (the last line of a cut list"
              " names the ID of the next page)", {"type": int, "metavar": "ID"}),
          Arg(("--limit",), "jobs a page, 1 to 1000 (default 200; with --all 1000)",
              {"type": int, "metavar": "N"})),
         "afarmctl jobs --all --json"),
    Verb("status", "show a job", "Show a job, its tasks, its outputs, and the energy (kWh)"
         " and cost its attempts used so far, and its task warnings: files the .blend needs"
         " that were missing on the slave (with the datablock that wants each) and a"
         " denoiser switched off. A job whose tasks all completed, some with warnings, is"
         " completed-with-warnings, not completed: its frames may be wrong. In --json the"
         " status field says so too, with task_warnings and warned_tasks; afarmctl jobs"
         " marks such a job with '!'.", (JOB,)),
    Verb("wait", "wait for a job",
         "Show a progress bar (frames done, total and ETA) until the job ends. Exits 0 if it"
         " completed and 1 if it failed or was canceled. Also exits 3 if it completed with"
         " warnings (listed). For a failed job it prints the first failed task's error and"
         " the afarmctl logs command that shows its output.", (JOB,)),
    Verb("fetch", "download a job's outputs",
         "Download every output of a job (frames, videos) into a directory. A file that is"
         " already there is never overwritten unless --force is given: fetch then stops"
         " before downloading anything. Exits 1 for a failed or canceled job, after"
         " downloading whatever outputs it has.",
         (JOB, Arg(("--output", "-o"), "directory to write to (default: ./afarm-job-ID)", {}),
          Arg(("--force",), "replace files that are already in the directory",
              {"action": "store_true"}))),
    Verb("cancel", "cancel a job", "Cancel a job; running tasks are stopped.", (JOB,)),
    Verb("pause", "pause a job", "Dispatch no new tasks of a job; running ones finish.",
         (JOB,)),
    Verb("resume", "resume a paused job", "Queue the paused tasks of a job again.", (JOB,)),
    Verb("requeue", "requeue a job's failed and canceled tasks",
         "Queue failed and canceled tasks of a job again and forget its blocklist.", (JOB,)),
    Verb("logs", "show a job's task logs",
         "Print the logs of a job's tasks: the command, exit code, error lines and the last"
         " lines of output of every attempt.",
         (JOB, Arg(("--task",), "only this task (its id or index)", {}))),
    Verb("slaves", "list slaves",
         "List the slaves: state (asleep, waking, testing, idle, busy, draining, down,"
         " quarantined, unreachable, ...) and for how long,"
         " the seconds per frame of their last benchmark, running tasks, the jobs they are"
         " blocklisted for, and their last error (a quarantined slave's: why). With --rank:"
         " the order in which free slaves take tasks, as a matrix of their properties"
         " (speed, watts, cost per frame, reliability, ...), the policy, and why each slave"
         " stands where it does. Discovered slaves are listed too: pending (waiting for"
         " slave accept) and gone (pending, then left the network; forgotten after [discovery]"
         " pending_expiry_hours). With --json each slave has state, the word the master"
         " stores (online for a connected slave without a task, kept for existing scripts),"
         " shown_state, the state as shown here (idle for it) and what the web page shows,"
         " and drained (true after slave drain).",
         (Arg(("--rank",), "show the ranking instead of the list", {"action": "store_true"}),
          Arg(("--job",), "with --rank: rank for this job (only slaves that may take its"
              " tasks; locality of its inputs)", {"type": int, "metavar": "ID"}),
          Arg(("--policy",), "with --rank: rank by this policy instead of the master's"
              " ([scheduler] policy): fastest, cheapest, greenest, lexicographic, weighted,"
              " pareto, cheapest-within-deadline or one of [policies]", {"metavar": "NAME"})),
         "afarmctl slaves --rank --policy pareto"),
    Verb("slave", "enroll and test slaves",
         "slave token: make a token with which one slave can enroll with this master, once,"
         " within --ttl seconds, and print the command to run on the slave as root"
         " (afarm-slave enroll --master HOST:PORT --token TOKEN). The job port must listen"
         " on an address the slave reaches. slave test NAME: run the slave's acceptance"
         " test again now (each application's test in the sandbox, an rsync round trip,"
         " scratch, disk, memory, GPUs); it is online when it passes and quarantined (no"
         " tasks) with the reason when not. Exits 1 when it failed. slave accept NAME: a"
         " slave found on the network (Avahi, _afarm._tcp; listed as pending by afarmctl"
         " slaves) is shown with its SSH host-key fingerprint and address; once you"
         " confirm (or give --yes) the master enrols it, bound to that fingerprint, with no"
         " token typed on the slave. Compare the fingerprint with ssh-keygen -lf"
         " /etc/ssh/ssh_host_ed25519_key.pub on the slave: anyone on the network can"
         " announce a name. slave reject NAME: forget a discovered slave (a pending one, or"
         " the warning about a changed fingerprint). slave wake NAME: send the slave's"
         " Wake-on-LAN magic packet now (its definition needs mac); with [power] enabled it"
         " is waking until SSH answers, then tested and idle, or down after resume_timeout."
         " A slave without mac that announced itself (discovery) is woken at the MAC it"
         " announced. slave drain NAME: the slave takes no new task; its running tasks"
         " finish and it is shown as draining; with [power] enabled and a mac it is then"
         " suspended (exclude and sleep_windows still apply) and never woken for work."
         " slave undrain NAME: it takes tasks again (asleep, it is woken when work needs"
         " it). Drained slaves stay drained when the master restarts.",
         (Arg(("action",), "what to do: token, test, accept, reject, wake, drain or undrain",
              {"choices": ["token", "test", "accept", "reject", "wake", "drain",
                           "undrain"]}),
          Arg(("name",), "the slave to test, accept, reject, wake, drain or undrain",
              {"nargs": "?", "default": ""}),
          Arg(("--yes",), "slave accept: do not ask for confirmation",
              {"action": "store_true"}),
          Arg(("--ttl",), "seconds the token stays valid, 60 to 604800 (default 3600)",
              {"type": int, "default": 3600}),
          Arg(("--replace",), "let the token enrol the known slave NAME again under a new"
              " SSH host key (a reinstalled machine); without it a known name must come"
              " back with the host key the master has", {"metavar": "NAME"})),
         "afarmctl --master farm.example.org slave token"),
    Verb("report", "energy, cost and busy hours per job and per slave",
         "Total the kWh, cost, busy hours and tasks of the attempts that ended between --since"
         " and --until, per job and per slave. Every attempt counts, failed and requeued ones"
         " too: their energy was spent. Energy is the slave's measured figure where it has"
         " one, else its busy seconds times watts_busy (per slot); a slave without watts is"
         " shown as unknown, never as 0. Dates are ISO 8601 in the master's local time"
         " unless they carry an offset.",
         (Arg(("--since",), "from this date or time (2026-12-01, 2026-12-01T18:00)",
              {"required": True, "metavar": "DATE"}),
          Arg(("--until",), "up to this date or time, exclusive (default: now)",
              {"metavar": "DATE"})),
         "afarmctl report --since 2026-11-01 --until 2026-12-01"),
    Verb("gc", "collect garbage now",
         "Delete uploaded files no job refers to once they are older than"
         " [master] file_retention_days (--older-than overrides), and tell every online slave"
         " to remove the task directories of finished jobs and trim its input cache.",
         (Arg(("--older-than",), "days an unreferenced upload is kept (default: the"
              " master's file_retention_days)", {"type": float}),)),
    Verb("demo", "render a demo on an embedded local farm",
         "Start a master with local slaves on loopback, make an animated scene with Blender,"
         " render it, encode an mp4, and print where the frames and the video are. Stops"
         " everything it started, also on Ctrl-C.",
         (Arg(("--slaves",), "local slaves (default 2)", {"type": int, "default": 2}),
          Arg(("--frames",), "frames to render (default 24)", {"type": int, "default": 24}),
          Arg(("--output", "-o"), "directory for the results (default: ./afarm-demo)",
              {"default": "afarm-demo"}),
          Arg(("--size",), "resolution WIDTHxHEIGHT (default 320x180)",
              {"default": "320x180"}),
          Arg(("--samples",), "Cycles samples (default 8)", {"type": int, "default": 8}))),
    Verb("app", "manage application versions in the master's pool",
         "app add NAME VERSION ARCHIVE|DIR: put a version of an application into the"
         " master's pool (pool/main/N/NAME/NAME_VERSION_ARCH.EXT, indexed in a checksummed"
         " Packages file). ARCHIVE is a .tar.xz, .tar.gz, .tar.bz2, .tar or .zip, such as a"
         " blender.org release (blender-4.2.3-linux-x64.tar.xz) as it is; a DIR is packed"
         " first. The version carries its own definition (--definition FILE) or else the"
         " master's definition of NAME, its program inside the archive, so versions may"
         " differ. Before a task of it runs, a slave receives the archive once, checks"
         " its sha256, unpacks it and runs its acceptance test; a slave where that test"
         " fails is quarantined for that version only (kept across master restarts until"
         " the version is removed or added again, or afarmctl slave test NAME). A slave"
         " whose architecture the version lacks is not given its tasks. app list: the"
         " versions, their sizes, which slaves hold each (as they last reported, connected"
         " now or not) and which are quarantined for it, with why. app remove NAME"
         " VERSION: refused while an unfinished job needs it.",
         (Arg(("action",), "add, list or remove", {"choices": ["add", "list", "remove"]}),
          Arg(("name",), "the application (as the master defines it)",
              {"nargs": "?", "default": ""}),
          Arg(("version",), "its version, Debian style (4.2.3)", {"nargs": "?", "default": ""}),
          Arg(("source",), "app add: the archive or directory",
              {"nargs": "?", "default": "", "metavar": "ARCHIVE|DIR"}),
          Arg(("--arch",), "the architecture it is built for: amd64 (default), arm64 or"
              " all", {"default": "amd64", "choices": ["amd64", "arm64", "all"]}),
          Arg(("--executable",), "the program's path inside the archive (default: the"
              " definition's program name at its top or in its one top directory)",
              {"metavar": "PATH"}),
          Arg(("--definition",), "app add: this version's own application definition (a"
              " file like those of the applications directory, see afarm.conf(5)); checked"
              " now, and its slaves build this version's argv from it. Default: the"
              " master's definition of NAME", {"metavar": "FILE"})),
         "afarmctl app add blender 4.2.3 blender-4.2.3-linux-x64.tar.xz"),
)

GLOBAL_ARGS: tuple[Arg, ...] = (
    Arg(("--master",), "the master's job port as HOST[:PORT] or [IPV6]:PORT (default:"
        " $AFARM_MASTER or 127.0.0.1:7731); the results port is the next port unless"
        " --results says", {}),
    Arg(("--results",), "the results port as HOST:PORT or [IPV6]:PORT", {}),
    Arg(("--token-file",), "file holding the bearer token; without it the token is"
        " $AFARM_TOKEN, and for a master on this machine the client-token file in its state"
        " directory ([master] state_dir of /etc/afarm/master.conf, readable by root and"
        " group afarm-master)", {}),
    Arg(("--json",), "print machine-readable JSON", {"action": "store_true"}),
)

EXIT_CODES = ((0, "success"), (1, "the operation failed (a job failed, the master refused)"),
              (2, "usage error: bad arguments or input; nothing was submitted"),
              (3, "wait, submit --wait: the job completed with warnings (a file it needs was"
                  " missing, the denoiser was off); its frames may be wrong"))
