"""The data pipeline every reference trial reads: story sources (``sources``), the
content-keyed tokenizer (``tokenizer``), verified token shards (``shards``), the packed
dataset (``tinystories``), the offline synthetic sample (``sample``, ``sample_lexicon``) and
the driver's checks before any trial (``preflight``).

Import direction: sources <- tokenizer <- shards <- tinystories; ``sample`` is read by
``sources``. No module here imports Ray; torch only in ``tinystories`` (the Dataset).
"""
