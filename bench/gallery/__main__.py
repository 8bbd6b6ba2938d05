import sys

from bench.gallery import main

if __name__ == "__main__":
    sys.exit(main())
