"""Topics a stack gains later (a model imported into a running stack) are co-partitioned with
`labels`, whatever the client's own `partitions` says: the joiner joins predictions with labels
key by key, and refuses topics that are not."""
from dataclasses import replace

from flywheel.streams.clients import make_admin
from flywheel.streams.topics import TopicCatalog, check_copartitioned, partitions_of, topic_partitions

from flywheel.wiring import ensure_core_topics


def test_a_model_added_later_takes_the_partitions_labels_has(config):
    ensure_core_topics(replace(config, kafka=replace(config.kafka, partitions=1)), ["first"])
    admin = make_admin(config.kafka)
    catalog = TopicCatalog(config.kafka)
    assert partitions_of(admin, catalog.labels) == 1 and config.kafka.partitions == 4
    ensure_core_topics(replace(config, kafka=replace(config.kafka, partitions=3)), ["later"])
    assert topic_partitions(admin, catalog.predictions("later")) == [0]
    check_copartitioned(admin, catalog.labels, rf"^{catalog.predictions('later')}$")


def test_a_new_cluster_takes_the_configured_count(config):
    ensure_core_topics(config, ["m"])
    admin = make_admin(config.kafka)
    catalog = TopicCatalog(config.kafka)
    assert partitions_of(admin, catalog.labels) == 4
    assert partitions_of(admin, f"{config.kafka.topic_prefix}absent") is None
    assert topic_partitions(admin, catalog.requests("m")) == [0, 1, 2, 3]
