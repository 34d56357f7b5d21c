"""Every section of the configuration file and the settings class that reads it: what
`load_config` checks up front and what the settings reference documents. A new concern's
settings are one line here."""
from feature_store.settings import StoreSettings
from processors.joiner.settings import JoinerSettings
from processors.monitor.settings import MonitorSettings
from processors.retrainer.settings import RetrainerSettings
from processors.rollout.settings import RolloutSettings
from processors.simulator.settings import SimulatorSettings
from processors.trigger.settings import TriggerSettings
from processors.worker.settings import WorkerSettings
from streams.settings import KafkaSettings, RotationSettings

from flywheel.demo import DemoSettings
from flywheel.settings import SupervisorSettings

SECTIONS: dict[str, type] = {
    "kafka": KafkaSettings,
    "store": StoreSettings,
    "worker": WorkerSettings,
    "joiner": JoinerSettings,
    "monitor": MonitorSettings,
    "trigger": TriggerSettings,
    "retrainer": RetrainerSettings,
    "rollout": RolloutSettings,
    "simulator": SimulatorSettings,
    "supervisor": SupervisorSettings,
    "demo": DemoSettings,
    "rotation": RotationSettings,
}
