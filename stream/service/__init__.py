"""The live worker: Faust app, agents, second-SIM stages, web views, metrics, topics.

``churn`` builds the service (:func:`stream.service.churn.build_service`) around the engine's
batch step; ``faust_adapter`` is the one module that touches Faust's and aiokafka's internals
(batch consumption, table writes in a partition, producer batches, persisted offsets).
Nothing is imported here, so ``stream.service.topics`` loads without Faust.
"""
