//! File descriptors at start-up: the soft limit raised to the hard one, and what it leaves room
//! for. A partition holds one descriptor (its active segment's; sealed segments are opened only
//! while read), a connection one, and a few more are opened briefly (index and checkpoint writes,
//! producer snapshots, `meta.json`). Connections get at most half of the limit; the partitions
//! get what is left beside a fixed headroom, so neither can starve the other: a broker at its
//! partition budget still accepts clients, and one at its connection limit still creates files.

use std::io;

/// Descriptors kept for files opened briefly, the listener, the runtime and stdio.
pub const DESCRIPTOR_HEADROOM: usize = 64;
/// The group and transaction logs' active segments.
pub const INTERNAL_LOGS: usize = 2;

/// What the descriptor limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Connections at most: `max.connections`, or half of the limit if that is less.
    pub connections: usize,
    /// Partitions at most, beside those connections, the internal logs and the headroom.
    pub partitions: usize,
}

/// The budget of a descriptor `limit` for a `max.connections` of `connections_max`.
pub fn budget(limit: usize, connections_max: usize) -> Budget {
    let connections = connections_max.min(limit / 2);
    Budget {
        connections,
        partitions: limit.saturating_sub(connections + DESCRIPTOR_HEADROOM + INTERNAL_LOGS),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns (the soft limit before, after).
pub fn raise_limit() -> io::Result<(usize, usize)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let usable = |n: libc::rlim_t| usize::try_from(n).unwrap_or(usize::MAX);
    Ok((usable(before), usable(limit.rlim_cur)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_at_most_half_and_partitions_the_rest() {
        // (limit, max.connections) -> (connections, partitions)
        let cases = [
            ((1024, 4096), (512, 446)),
            ((1024, 40), (40, 918)),
            ((1_048_576, 4096), (4096, 1_044_414)),
            ((100, 4096), (50, 0)),
        ];
        for ((limit, connections_max), (connections, partitions)) in cases {
            assert_eq!(
                budget(limit, connections_max),
                Budget {
                    connections,
                    partitions
                },
                "limit {limit}, max.connections {connections_max}"
            );
        }
    }
}
