//! This node's identity for leases.

use ferry_config::Config;

use super::StartError;

/// This node's identity for leases: the cluster's node id, or else an id
/// made once and kept in the data dir, so a restarted node (even after a
/// kill) takes its leases back at once instead of waiting for them to
/// expire.
pub(crate) fn node_identity(config: &Config) -> Result<String, StartError> {
    if let Some(cluster) = &config.cluster {
        return Ok(cluster.node_id.clone());
    }
    let path = config.data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::file("read", &path)(e)),
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, format!("{id}\n")).map_err(StartError::file("write", &path))?;
    Ok(id)
}
