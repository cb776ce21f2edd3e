// The demo channel: should we provision more computing resources for the idle jobs in
// our batch queue, and where?  Runs with no network: the sources read snapshots shipped
// with decisionengine.modules.demo and move to the next one every `period` seconds.
local demo = 'decisionengine.modules.demo.';
{
  sources: {
    jobs: {
      module: demo + 'JobQueueSource',
      parameters: { period: 20 },
      schedule: 5,  // seconds
      retries: 2,
      retry_interval: 2,
    },
    catalogue: {
      module: demo + 'ResourceCatalogueSource',
      parameters: { period: 60 },
      schedule: 15,
    },
  },
  transforms: {
    demand: { module: demo + 'DemandTransform' },
    merit: { module: demo + 'FigureOfMeritTransform', parameters: { max_hourly_budget: 40 } },
  },
  logicengines: {
    logic: {
      module: 'decisionengine.framework.logicengine.LogicEngine',
      parameters: {
        facts: {
          demand_pending: 'demand.idle_cpus.sum() > 0',
          capacity_available: '(figure_of_merit.free_instances > 0).any()',
          plan_not_empty: 'not provisioning_plan.empty',
          plan_within_budget: 'provisioning_plan.hourly_cost.sum() <= 40',
        },
        rules: {
          provision: {
            expression: 'demand_pending and capacity_available and plan_not_empty and plan_within_budget',
            actions: ['provisioner', 'summary'],
            false_actions: ['summary'],
            facts: ['provisioning'],
          },
        },
      },
    },
  },
  publishers: {
    provisioner: { module: demo + 'ProvisioningRequestPublisher', parameters: { output_dir: 'demo-output' } },
    summary: { module: demo + 'SummaryPublisher', parameters: { output_dir: 'demo-output' } },
  },
  task_manager: { module_timeout: 120 },
}
