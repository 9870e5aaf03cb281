"""Task registry: name -> (builder, kind). Builders take plain values."""
from jaxdl.tasks import synthetic

SEQUENCE_TASKS = {
    "echo": synthetic.echo,
    "adding": synthetic.adding,
    "sine": synthetic.sine,
}
