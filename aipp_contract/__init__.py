"""What crosses the line between the infrastructure and the runtime, owned in one place.

The stacks and constructs (`stacks/`, `cdk_constructs/`) and the runtime (`worker_images/aipp`,
`lambda_src/`) both import this package, so the two sides cannot spell a name differently:

- `env`: the environment variables the stacks set and the runtime's `Settings` reads;
- `keys`: the audio bucket's key prefixes and the builders of every key, and the models bucket's;
- `messages`: the task types, the queue message attribute and body, and which queues each kind
  of process sends to and receives from;
- `upload`: the upload rules the API and the upload check share (what counts as audio, the
  rejection codes).

Plain Python, standard library only: no CDK, no runtime dependency (an import-linter contract in
pyproject.toml keeps it so). tests/infra/test_contract.py reads every synthesized template
against it.
"""
