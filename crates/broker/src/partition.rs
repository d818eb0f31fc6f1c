//! One partition: its log and the offsets Kafka clients see. ferry has one replica, so the high
//! watermark is the log end offset (written to the OS); what `acks=all` waits for is the fsync,
//! tracked separately by the group commit.

use storage::{LogError, PartitionLog};

pub struct Partition {
    log: PartitionLog,
}

impl Partition {
    pub fn new(log: PartitionLog) -> Partition {
        Partition { log }
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn high_watermark(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The last stable offset: no transactions yet, so it is the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn close(self) -> Result<(), LogError> {
        self.log.close()
    }

    pub fn delete(self) -> Result<(), LogError> {
        self.log.delete()
    }
}
