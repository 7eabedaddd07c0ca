#!/bin/sh
echo '{"pages": 1}' > /runyard/outputs/results.json
