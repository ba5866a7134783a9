"""The ground floor of dfer: what every stage, the trainer and ``dfer predict`` stand on.

Artifact I/O with provenance, the one definition of paths and shard names, strict config,
device and weight resolution, face detection, frame sampling, the shared shard runner and
the accounting of clips the stages lost.
Nothing here imports a stage package, so any stage may import any of it.
"""
