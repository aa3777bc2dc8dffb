//! Keeping two threads on one CPU: the SQLite posting lane and its connection's thread (see
//! [`super::batch`]). Every statement is a hand-over between them (sqlx runs each SQLite
//! connection on a thread of its own), twice: when the two sit on different CPUs each hand-over
//! wakes a sleeping CPU, which on a small virtual machine costs more than the statement.
//! Linux only; elsewhere nothing is pinned.

/// The CPU to keep a lane on when none was chosen: the last one this process may run on (the
/// first one takes most interrupts). `None` when that cannot be read.
pub(crate) fn default_cpu() -> Option<usize> {
    imp::allowed_cpus().and_then(|cpus| cpus.last().copied())
}

/// Keeps the calling thread on `cpu`; `false` when the system refused (a CPU this process may
/// not use, or not Linux).
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    imp::pin(None, cpu)
}

/// Keeps every thread of this process named `name` on `cpu`; how many were pinned.
pub(crate) fn pin_threads_named(name: &str, cpu: usize) -> usize {
    imp::threads_named(name)
        .into_iter()
        .filter(|tid| imp::pin(Some(*tid), cpu))
        .count()
}

/// The CPUs the thread `tid` of this process may run on (tests).
#[cfg(test)]
pub(crate) fn cpus_of(tid: i32) -> Option<Vec<usize>> {
    imp::cpus_of(tid)
}

/// The ids of this process's threads named `name` (tests).
#[cfg(test)]
pub(crate) fn threads_named(name: &str) -> Vec<i32> {
    imp::threads_named(name)
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    pub(super) fn allowed_cpus() -> Option<Vec<usize>> {
        cpus_of(0)
    }

    pub(super) fn cpus_of(tid: i32) -> Option<Vec<usize>> {
        let set = sched_getaffinity(Pid::from_raw(tid)).ok()?;
        Some(
            (0..CpuSet::count())
                .filter(|cpu| set.is_set(*cpu).unwrap_or(false))
                .collect(),
        )
    }

    pub(super) fn pin(tid: Option<i32>, cpu: usize) -> bool {
        let mut set = CpuSet::new();
        if set.set(cpu).is_err() {
            return false;
        }
        sched_setaffinity(Pid::from_raw(tid.unwrap_or(0)), &set).is_ok()
    }

    /// Thread names are read from `/proc/self/task/<tid>/comm` (at most 15 bytes).
    pub(super) fn threads_named(name: &str) -> Vec<i32> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn allowed_cpus() -> Option<Vec<usize>> {
        None
    }

    #[cfg(test)]
    pub(super) fn cpus_of(_tid: i32) -> Option<Vec<usize>> {
        None
    }

    pub(super) fn pin(_tid: Option<i32>, _cpu: usize) -> bool {
        false
    }

    pub(super) fn threads_named(_name: &str) -> Vec<i32> {
        Vec::new()
    }
}
