"""Every section of the configuration file and the settings class that reads it: what
`load_config` checks up front and what the settings reference documents. A new concern's
settings are one line here."""
from flywheel.demo import DemoSettings
from flywheel.feature_store.settings import StoreSettings
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.processors.retrainer.settings import RetrainerSettings
from flywheel.processors.rollout.settings import RolloutSettings
from flywheel.processors.simulator.settings import SimulatorSettings
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.settings import SupervisorSettings
from flywheel.streams.settings import KafkaSettings, RotationSettings
from flywheel.web.settings import ConsoleSettings

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
    "console": ConsoleSettings,
}
