#!/bin/bash
set -euo pipefail
mkdir -p /opt/acme-shop
