/* The public header compiles alone, in C99, pedantic, as its first include. */
#include "ratectl.h"
int ratectl_headercheck(void);
int ratectl_headercheck(void) { return RATECTL_ELIMITED < RATECTL_ERR_BASE + 1; }
