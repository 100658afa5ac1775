# The two commands in the README:
#   make run    set up, migrate, create the demo data and serve on http://127.0.0.1:8000/
#   make test   set up and run the whole test suite (installs Debian's chromium if missing)
PYTHON ?= python3
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test chromium

run: $(VENV)/.installed
	@$(PY) manage.py migrate --noinput -v0
	@$(PY) manage.py demo
	@echo
	@echo "  launchq is running at http://127.0.0.1:$(PORT)/"
	@echo "  Log in as 'admin' (team admin) or 'member' (team member) with the password above."
	@echo "  Stop it with Ctrl-C."
	@echo
	@$(PY) manage.py runserver 127.0.0.1:$(PORT) --noreload

test: $(VENV)/.installed-test chromium
	$(PY) -m pytest $(PYTEST_ARGS)

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
	@touch $@ $(VENV)/.installed

chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); \
	  else \
	    echo "The browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; \
	  fi; }
