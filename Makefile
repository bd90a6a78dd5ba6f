# streamae: `make demo` runs the main job, `make test` runs the tests. Both create or
# reuse .venv, keyed on pyproject.toml, so reruns skip the install.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: install demo test bench eval quality
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/streamae demo --out runs/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/throughput.py

# labelled public data (NAB, SMD, SMAP/MSL): `make eval DATA=/path/to/data`
DATA ?= ../shared/data

eval: $(STAMP)
	STREAMAE=$(VENV)/bin/streamae bench/evaluate_datasets.sh $(DATA) runs/datasets

quality: $(STAMP)
	$(VENV)/bin/python bench/quality.py --data $(DATA) --out runs/quality
