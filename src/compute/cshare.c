/* cshare — the kept share of each WORK (see cshare.h). */
#include "convoy/cshare.h"

#include <math.h>

uint32_t cshare_keep(struct cshare *s, uint32_t count, uint32_t weight, uint32_t behind,
                     struct cshare_room r)
{
    if (behind == 0)
        return count;
    double w = weight ? weight : 1;
    s->credit += (double)count * w / (w + behind);
    double k = floor(s->credit + 1e-9);    /* 3 · (1/3) is one item, not 0.999… */
    k = k < 0 ? 0 : k > count ? count : k; /* below 0 while repaying a borrow */
    s->credit -= k;
    uint32_t keep = (uint32_t)k, fits = count < r.room ? count : r.room;
    if (r.idle && keep < fits) { /* borrowed from the share of the WORKs to come */
        s->credit -= fits - keep;
        if (s->credit < -(double)count)
            s->credit = -(double)count; /* never more than a WORK ahead */
        keep = fits;
    }
    return keep < r.room ? keep : r.room;
}

uint32_t cshare_weight(double gflops)
{
    double w = gflops * 10;
    return w < 1 ? 1 : w > 1e9 ? 1000000000u : (uint32_t)lround(w);
}
