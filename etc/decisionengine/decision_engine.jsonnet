// Global configuration of the decision engine (see README.rst, "Configuration reference").
//
// Paths left out take their defaults; `de-server --state-dir DIR` puts the default
// SQLite dataspace, the logs and the demo's output under DIR instead of /var/lib and
// /var/log, which is what the README's quick start does.
{
  server_address: ['localhost', 8888],

  logger: {
    log_level: 'INFO',
    global_channel_log_level: 'INFO',
    file_rotate_by: 'size',
    max_file_size: 100000000,
    max_backup_count: 5,
  },

  shutdown_timeout: 30,

  dataspace: {
    datasource: {
      module: 'decisionengine.framework.dataspace.datasources.sqlalchemy_ds',
      name: 'SQLAlchemyDS',
      config: {
        // url: 'postgresql://decisionengine:PASSWORD@db.example.org/decisionengine',
        // pool_size: 5,
      },
    },
    retention_interval_in_days: 30,
    reaper_run_interval: 86400,
    reaper_start_delay_seconds: 1818,
  },

  webserver: {},
}
