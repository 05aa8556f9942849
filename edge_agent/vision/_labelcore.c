/* The label check's per-frame pixel work in one call each: locate the label in a BGR frame,
 * and warp it into the model's input.
 *
 * The same algorithm as edge_agent/vision/preprocess.py's OpenCV path (which stays the
 * reference and the fallback): the green channel of every step-th pixel of every step-th
 * row, Otsu's threshold, the outermost light 8-connected outlines, the largest
 * label-shaped one's convex hull simplified to four corners (Douglas-Peucker, tolerance a
 * fraction of the hull's perimeter), each side moved out to the label's edge. What OpenCV
 * does in nine calls, each paying for its cold code and the Python around it after a model
 * invocation has evicted the caches, is one pass here. Anything off the common path (a hull
 * that does not simplify to four corners, a frame that is not a C-contiguous H x W x 3 uint8
 * buffer, corners that are not finite) is answered FALLBACK and the OpenCV path decides.
 *
 * No NumPy C API: frames and outputs come in through the buffer protocol, so one build
 * serves NumPy 1 and 2 alike.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FALLBACK = 0, BLANK_FRAME = 1, NO_LABEL = 2, LABEL_CUT_OFF = 3 };

/* Set once from preprocess.py's constants (configure()), so they live in one place. */
static struct {
    int work_width;
    int min_contrast;
    double min_area_fraction, max_area_fraction, min_fill;
    double aspect, aspect_slack, polygon_tolerance, edge_offset;
    int ready;
} cfg;

typedef struct {
    int y, x0, x1;  /* a row's run of equal pixels, x0..x1 inclusive */
    int parent;     /* union-find */
    int left_bg;    /* foreground runs: the background run just left of it, or -1 */
} Run;

typedef struct {
    double area;
    int root;
} Candidate;

typedef struct {
    uint8_t *work; /* the work image, then its binary */
    Run *fg, *bg;
    int nfg, nbg;
    char *outside;         /* per background run: its region reaches the frame's edge */
    Candidate *candidates; /* outlines of a label's size, largest first */
    int *box;              /* per foreground run (the roots): min x, max x, min y, max y */
    int *left, *right; /* per row of a traced outline: leftmost / rightmost x */
    double *hx, *hy;   /* hull points */
    double *px, *py;   /* the rows' extreme points the hull is taken of */
} Scratch;

static int find(Run *runs, int i) {
    while (runs[i].parent != i) {
        runs[i].parent = runs[runs[i].parent].parent;
        i = runs[i].parent;
    }
    return i;
}

static void unite(Run *runs, int a, int b) {
    a = find(runs, a);
    b = find(runs, b);
    if (a < b) runs[b].parent = a; /* the raster-first run stays the root */
    else if (b < a) runs[a].parent = b;
}

/* Otsu's threshold over a 256-bin histogram, as OpenCV computes it. */
static int otsu(const int *hist, int total) {
    double mu = 0, scale = 1.0 / total, mu1 = 0, q1 = 0, max_sigma = 0;
    int max_val = 0;
    for (int i = 0; i < 256; i++) mu += i * (double)hist[i];
    mu *= scale;
    for (int i = 0; i < 256; i++) {
        double p_i = hist[i] * scale, q2, mu2, sigma;
        mu1 *= q1;
        q1 += p_i;
        q2 = 1. - q1;
        if (fmin(q1, q2) < FLT_EPSILON || fmax(q1, q2) > 1. - FLT_EPSILON) continue;
        mu1 = (mu1 + i * p_i) / q1;
        mu2 = (mu - q1 * mu1) / q2;
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if (sigma > max_sigma) {
            max_sigma = sigma;
            max_val = i;
        }
    }
    return max_val;
}

/* Runs of one row of the binary image, joined to the previous row's: foreground runs
 * 8-connected, background runs 4-connected (the pairing that makes outlines and holes
 * well defined). */
static void row_runs(Scratch *s, int y, int width, int *fg_prev, int *bg_prev) {
    const uint8_t *row = s->work + (size_t)y * width;
    int fg_start = s->nfg, bg_start = s->nbg;
    int x = 0;
    while (x < width) {
        int v = row[x], x0 = x;
        uint64_t same = v ? 0x0101010101010101u : 0; /* eight pixels of this run at once */
        for (uint64_t word; x + 8 <= width; x += 8) {
            memcpy(&word, row + x, 8);
            if (word != same) break;
        }
        while (x < width && row[x] == v) x++;
        if (v) {
            Run *r = &s->fg[s->nfg];
            r->y = y, r->x0 = x0, r->x1 = x - 1, r->parent = s->nfg;
            r->left_bg = x0 > 0 ? s->nbg - 1 : -1;
            s->nfg++;
        } else {
            Run *r = &s->bg[s->nbg];
            r->y = y, r->x0 = x0, r->x1 = x - 1, r->parent = s->nbg, r->left_bg = -1;
            s->nbg++;
        }
    }
    /* join to the previous row: two pointers over runs sorted by x */
    int j = fg_prev[0];
    for (int i = fg_start; i < s->nfg; i++) {
        Run *r = &s->fg[i];
        while (j < fg_prev[1] && s->fg[j].x1 < r->x0 - 1) j++;
        for (int k = j; k < fg_prev[1] && s->fg[k].x0 <= r->x1 + 1; k++) unite(s->fg, i, k);
    }
    j = bg_prev[0];
    for (int i = bg_start; i < s->nbg; i++) {
        Run *r = &s->bg[i];
        while (j < bg_prev[1] && s->bg[j].x1 < r->x0) j++;
        for (int k = j; k < bg_prev[1] && s->bg[k].x0 <= r->x1; k++) unite(s->bg, i, k);
    }
    fg_prev[0] = fg_start, fg_prev[1] = s->nfg;
    bg_prev[0] = bg_start, bg_prev[1] = s->nbg;
}

/* The binary image's values: 0 background, 1 foreground; the first trace of an outline
 * marks its border pixels VISITED, and VISITED_AGAIN where the border passes twice (a
 * one-pixel-wide part). */
enum { VISITED = 2, VISITED_AGAIN = 3 };

static const int DX[8] = {1, 1, 0, -1, -1, -1, 0, 1}; /* E, SE, S, SW, W, NW, N, NE: */
static const int DY[8] = {0, 1, 1, 1, 0, -1, -1, -1}; /* clockwise on screen (y down) */

static int pixel(const uint8_t *b, int width, int height, int x, int y) {
    return x >= 0 && y >= 0 && x < width && y < height && b[(size_t)y * width + x];
}

/* Follow the outer border of the outline whose raster-first pixel is (sx, sy) (Suzuki and
 * Abe's border following, as findContours does): the area its pixel centres enclose
 * (cv2.contourArea), each row's leftmost and rightmost border pixel (the convex hull's
 * candidates; rows counted from sy), and in *corners the number of points
 * findContours' CHAIN_APPROX_SIMPLE would keep. */
static double trace(uint8_t *b, int width, int height, int sx, int sy, int *left, int *right,
                    int rows, int *corners, int count_visits) {
    for (int r = 0; r < rows; r++) left[r] = INT_MAX, right[r] = INT_MIN;
    left[0] = right[0] = sx;
    int d1 = -1;
    for (int k = 0; k < 8; k++) { /* clockwise from the west neighbour */
        int d = (4 + k) & 7;
        if (pixel(b, width, height, sx + DX[d], sy + DY[d])) {
            d1 = d;
            break;
        }
    }
    *corners = 1;
    if (count_visits) b[(size_t)sy * width + sx] = VISITED;
    if (d1 < 0) return 0.0; /* a lone pixel */
    int x1 = sx + DX[d1], y1 = sy + DY[d1];
    int x3 = sx, y3 = sy, from = d1; /* direction from the current pixel to the previous */
    int move = (d1 + 4) & 7, turns = 0; /* the last step's direction: into the start */
    double twice_area = 0.0;
    for (long steps = 0; steps < 4L * width * height + 8; steps++) {
        int d4 = -1;
        for (int k = 1; k <= 8; k++) { /* counter-clockwise, from the one after the previous */
            int d = (from - k) & 7;
            if (pixel(b, width, height, x3 + DX[d], y3 + DY[d])) {
                d4 = d;
                break;
            }
        }
        int x4 = x3 + DX[d4], y4 = y3 + DY[d4];
        turns += d4 != move;
        move = d4;
        twice_area += (double)x3 * y4 - (double)x4 * y3;
        int r = y4 - sy;
        if (x4 < left[r]) left[r] = x4;
        if (x4 > right[r]) right[r] = x4;
        if (x4 == sx && y4 == sy && x3 == x1 && y3 == y1) break;
        if (count_visits) { /* 1: not yet on the border, VISITED once, then VISITED_AGAIN */
            uint8_t *at = &b[(size_t)y4 * width + x4];
            *at = *at == 1 ? VISITED : VISITED_AGAIN;
        }
        from = (d4 + 4) & 7;
        x3 = x4, y3 = y4;
    }
    *corners = turns; /* the points CHAIN_APPROX_SIMPLE keeps: where the direction changes */
    return fabs(twice_area) * 0.5;
}

static double cross(double ox, double oy, double ax, double ay, double bx, double by) {
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox);
}

/* Convex hull (Andrew's monotone chain) of the rows' extreme points, which come sorted
 * by (y, x). Returns the number of hull points written to hx, hy. */
static int hull(const int *left, const int *right, int rows, int y0, double *hx, double *hy,
                double *px, double *py) {
    int n = 0;
    for (int r = 0; r < rows; r++) {
        if (left[r] > right[r]) continue;
        px[n] = left[r], py[n] = y0 + r, n++;
        if (right[r] != left[r]) px[n] = right[r], py[n] = y0 + r, n++;
    }
    if (n < 3) {
        for (int i = 0; i < n; i++) hx[i] = px[i], hy[i] = py[i];
        return n;
    }
    int k = 0; /* sorted by (y, x): chains along y */
    for (int i = 0; i < n; i++) {
        while (k >= 2 && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], px[i], py[i]) <= 0) k--;
        hx[k] = px[i], hy[k] = py[i], k++;
    }
    for (int i = n - 2, t = k + 1; i >= 0; i--) {
        while (k >= t && cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], px[i], py[i]) <= 0) k--;
        hx[k] = px[i], hy[k] = py[i], k++;
    }
    k--;
    /* as cv2.convexHull gives a contour's hull: clockwise on screen, beginning just after
     * the raster-first point (hx[0] here) and ending with it */
    double twice = 0;
    for (int i = 0; i < k; i++) {
        int j = (i + 1) % k;
        twice += hx[i] * hy[j] - hx[j] * hy[i];
    }
    if (twice < 0) { /* reverse, keeping the first */
        for (int i = 1, j = k - 1; i < j; i++, j--) {
            double t = hx[i];
            hx[i] = hx[j], hx[j] = t;
            t = hy[i], hy[i] = hy[j], hy[j] = t;
        }
    }
    double fx = hx[0], fy = hy[0];
    memmove(hx, hx + 1, sizeof(double) * (k - 1));
    memmove(hy, hy + 1, sizeof(double) * (k - 1));
    hx[k - 1] = fx, hy[k - 1] = fy;
    return k;
}

/* Douglas-Peucker on the closed polygon hx, hy (n points), as OpenCV's approxPolyDP does it
 * (its starting pair, its order of splits, its tie-breaking and its final removal of
 * points on almost straight lines), so the corners are the ones the OpenCV path finds.
 * Writes the kept points' indices to kept (room for `room`); returns how many, or -1
 * when they would not fit. */
static int simplify(const double *hx, const double *hy, int n, double eps, int *kept, int room) {
    enum { STACK = 256 };
    int stack[STACK][2], top = 0, count = 0, pos = 0, far = 0;
    eps *= eps;
    if (n == 0) return 0;
    double max_dist = 0;
    for (int round = 0; round < 3; round++) { /* two far points: "farthest from the last" */
        pos = (pos + far) % n;
        max_dist = 0;
        far = 0;
        for (int j = 1; j < n; j++) {
            int i = (pos + j) % n;
            double dx = hx[i] - hx[pos], dy = hy[i] - hy[pos], dist = dx * dx + dy * dy;
            if (dist > max_dist) max_dist = dist, far = j;
        }
    }
    if (max_dist <= eps) {
        kept[count++] = pos;
        return count;
    }
    int a = pos, b = (pos + far) % n;
    stack[top][0] = b, stack[top][1] = a, top++; /* visited second */
    stack[top][0] = a, stack[top][1] = b, top++;
    int split = 0;
    while (top > 0) {
        top--;
        int s = stack[top][0], e = stack[top][1], at = (s + 1) % n;
        int straight;
        if (at != e) {
            double dx = hx[e] - hx[s], dy = hy[e] - hy[s], most = 0;
            for (; at != e; at = (at + 1) % n) {
                double dist = fabs((hy[at] - hy[s]) * dx - (hx[at] - hx[s]) * dy);
                if (dist > most) most = dist, split = at;
            }
            straight = most * most <= eps * (dx * dx + dy * dy);
        } else {
            straight = 1;
        }
        if (straight) {
            if (count >= room) return -1;
            kept[count++] = s;
        } else {
            if (top + 2 > STACK) return -1;
            stack[top][0] = split, stack[top][1] = e, top++;
            stack[top][0] = s, stack[top][1] = split, top++;
        }
    }
    /* remove kept points that lie on an almost straight line between their neighbours */
    int total = count, wpos = 0, left = count;
    pos = total - 1;
    int start = kept[pos];
    pos = 0;
    int pt = kept[pos];
    pos = (pos + 1) % total;
    for (int i = 0; i < total && left > 2; i++) {
        int end = kept[pos];
        pos = (pos + 1) % total;
        double dx = hx[end] - hx[start], dy = hy[end] - hy[start];
        double dist = fabs((hx[pt] - hx[start]) * dy - (hy[pt] - hy[start]) * dx);
        double inner = (hx[pt] - hx[start]) * (hx[end] - hx[pt]) +
                       (hy[pt] - hy[start]) * (hy[end] - hy[pt]);
        if (dist * dist <= 0.5 * eps * (dx * dx + dy * dy) && dx != 0 && dy != 0 && inner >= 0) {
            left--;
            kept[wpos] = start = end;
            wpos = (wpos + 1) % total;
            pt = kept[pos];
            pos = (pos + 1) % total;
            i++;
            continue;
        }
        kept[wpos] = start = pt;
        wpos = (wpos + 1) % total;
        pt = end;
    }
    return left;
}

/* Clockwise on screen (y down) order of four corners x0, y0, ... */
static void clockwise(double *q) {
    double turn = (q[2] - q[0]) * (q[5] - q[3]) - (q[3] - q[1]) * (q[4] - q[2]);
    if (turn > 0) return;
    double r[8] = {q[6], q[7], q[4], q[5], q[2], q[3], q[0], q[1]};
    memcpy(q, r, sizeof r);
}

static int label_shaped(const double *q, double area) {
    double sides[4];
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) & 3;
        sides[i] = hypot(q[2 * j] - q[2 * i], q[2 * j + 1] - q[2 * i + 1]);
    }
    double first = sides[0] + sides[2], second = sides[1] + sides[3];
    if (fmin(first, second) <= 0) return 0;
    double aspect = fmax(first, second) / fmin(first, second);
    if (!(cfg.aspect / cfg.aspect_slack <= aspect && aspect <= cfg.aspect * cfg.aspect_slack))
        return 0;
    double enclosed = 0;
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) & 3;
        enclosed += q[2 * i] * q[2 * j + 1] - q[2 * j] * q[2 * i + 1];
    }
    enclosed *= 0.5;
    return enclosed > 0 && area / enclosed >= cfg.min_fill;
}

/* Every side of clockwise q moved `distance` outward; 0 if two neighbours are parallel or a
 * side has no length. */
static int outset(double *q, double distance) {
    double lines[4][3];
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) & 3;
        double x0 = q[2 * i], y0 = q[2 * i + 1], x1 = q[2 * j], y1 = q[2 * j + 1];
        double length = hypot(x1 - x0, y1 - y0);
        if (length == 0) return 0;
        double nx = (y1 - y0) / length, ny = (x0 - x1) / length;
        lines[i][0] = nx, lines[i][1] = ny, lines[i][2] = -(nx * x0 + ny * y0) - distance;
    }
    double out[8];
    for (int side = 0; side < 4; side++) {
        const double *l1 = lines[(side + 3) & 3], *l2 = lines[side];
        double det = l1[0] * l2[1] - l2[0] * l1[1];
        if (fabs(det) < 1e-9) return 0;
        out[2 * side] = (l1[1] * l2[2] - l2[1] * l1[2]) / det;
        out[2 * side + 1] = (l2[0] * l1[2] - l1[0] * l2[2]) / det;
    }
    memcpy(q, out, sizeof out);
    return 1;
}

/* Clockwise corners re-ordered TL, TR, BR, BL: long sides horizontal, top side higher. */
static void canonical_order(double *q) {
    double first = hypot(q[2] - q[0], q[3] - q[1]) + hypot(q[6] - q[4], q[7] - q[5]);
    double second = hypot(q[4] - q[2], q[5] - q[3]) + hypot(q[0] - q[6], q[1] - q[7]);
    int start = first >= second ? 0 : 1;
    if (q[2 * start + 1] + q[2 * (start + 1) + 1] > q[2 * (start + 2) + 1] + q[2 * ((start + 3) & 3) + 1])
        start += 2;
    double r[8];
    for (int i = 0; i < 8; i++) r[i] = q[(2 * start + i) & 7];
    memcpy(q, r, sizeof r);
}

static int convex(const double *q) {
    int positive = 0, negative = 0;
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) & 3, k = (i + 2) & 3;
        double t = (q[2 * j] - q[2 * i]) * (q[2 * k + 1] - q[2 * j + 1]) -
                   (q[2 * j + 1] - q[2 * i + 1]) * (q[2 * k] - q[2 * j]);
        positive += t > 0;
        negative += t < 0;
    }
    return positive == 4 || negative == 4;
}

/* The located corners (TL, TR, BR, BL; frame pixels, rounded to float32) in q, or why not. */
static int locate_frame(const uint8_t *frame, int height, int width, Scratch *s, double *q) {
    int step = (width + cfg.work_width - 1) / cfg.work_width;
    if (step < 2) step = 2;
    int ww = (width + step - 1) / step, wh = (height + step - 1) / step;
    int hist[256] = {0}, darkest = 255, lightest = 0;
    size_t row_bytes = (size_t)width * 3;
    size_t ahead = 2 * (size_t)step * row_bytes; /* the lines of the work row after next */
    size_t frame_bytes = (size_t)height * row_bytes;
    for (int y = 0; y < wh; y++) {
        const uint8_t *src = frame + (size_t)y * step * row_bytes + 1;
        if ((size_t)y * step * row_bytes + ahead < frame_bytes)
            for (size_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(src + ahead + line);
        uint8_t *dst = s->work + (size_t)y * ww;
        for (int x = 0; x < ww; x++) {
            uint8_t v = src[(size_t)x * step * 3];
            dst[x] = v;
            hist[v]++;
        }
    }
    for (int v = 0; v < 256; v++)
        if (hist[v]) {
            darkest = v;
            break;
        }
    for (int v = 255; v >= 0; v--)
        if (hist[v]) {
            lightest = v;
            break;
        }
    int threshold = otsu(hist, ww * wh);
    size_t total = (size_t)ww * wh;
    uint8_t level = (uint8_t)threshold; /* (a byte compare, which compilers vectorise) */
    for (size_t i = 0; i < total; i++) s->work[i] = s->work[i] > level;

    s->nfg = s->nbg = 0;
    int fg_prev[2] = {0, 0}, bg_prev[2] = {0, 0};
    for (int y = 0; y < wh; y++) row_runs(s, y, ww, fg_prev, bg_prev);

    /* background regions reaching the frame's edge are the outside */
    char *outside = s->outside;
    Candidate *candidates = s->candidates;
    memset(outside, 0, (size_t)s->nbg + 1);
    int *min_x = s->box, *max_x = min_x + s->nfg + 1, *min_y = max_x + s->nfg + 1;
    int *max_y = min_y + s->nfg + 1;
    for (int i = 0; i < s->nbg; i++) {
        Run *r = &s->bg[i];
        if (r->x0 == 0 || r->x1 == ww - 1 || r->y == 0 || r->y == wh - 1)
            outside[find(s->bg, i)] = 1;
    }
    for (int i = 0; i < s->nfg; i++) min_x[i] = INT_MAX, max_x[i] = INT_MIN, max_y[i] = INT_MIN;
    for (int i = 0; i < s->nfg; i++) {
        Run *r = &s->fg[i];
        int root = find(s->fg, i);
        if (r->x0 < min_x[root]) min_x[root] = r->x0;
        if (r->x1 > max_x[root]) max_x[root] = r->x1;
        if (root == i) min_y[root] = r->y;
        if (r->y > max_y[root]) max_y[root] = r->y;
    }
    double work_area = (double)ww * wh;
    double smallest = cfg.min_area_fraction * work_area, largest = cfg.max_area_fraction * work_area;
    int ncand = 0;
    for (int i = 0; i < s->nfg; i++) {
        if (find(s->fg, i) != i) continue; /* roots only: each outline once */
        Run *first = &s->fg[i];
        /* outermost (findContours' RETR_EXTERNAL): the background left of its raster-first
         * pixel is the outside, or it starts at the frame's edge */
        if (first->left_bg >= 0 && !outside[find(s->bg, first->left_bg)]) continue;
        double box = (double)(max_x[i] - min_x[i] + 1) * (max_y[i] - min_y[i] + 1);
        if (box <= smallest) continue; /* the outline's area is less than its box's */
        int rows = max_y[i] - min_y[i] + 1;
        int points;
        double area =
            trace(s->work, ww, wh, first->x0, first->y, s->left, s->right, rows, &points, 1);
        /* OpenCV's path passes over outlines of fewer than four corner points */
        if (points >= 4 && smallest < area && area <= largest) {
            /* sorted by area, largest first; of equal areas the last found first, as
             * findContours lists them */
            int at = ncand++;
            while (at > 0 && candidates[at - 1].area <= area) {
                candidates[at] = candidates[at - 1];
                at--;
            }
            candidates[at].area = area, candidates[at].root = i;
        }
    }
    int cut_off = 0, found = 0, result = NO_LABEL;
    for (int c = 0; c < ncand && !found; c++) {
        int i = candidates[c].root;
        int x = min_x[i], y = min_y[i], w = max_x[i] - x + 1, h = max_y[i] - y + 1;
        if (x == 0 || y == 0 || x + w == ww || y + h == wh) {
            cut_off = cut_off || (w < ww && h < wh); /* edge to edge: the belt itself */
            continue;
        }
        Run *first = &s->fg[i];
        int points;
        trace(s->work, ww, wh, first->x0, first->y, s->left, s->right, h, &points, 0);
        int n = hull(s->left, s->right, h, y, s->hx, s->hy, s->px, s->py);
        int twice = 0; /* a hull corner the border passes twice: cv2.convexHull then starts
                        * its hull elsewhere, and approxPolyDP may keep other corners */
        for (int k = 0; k < n; k++)
            twice |= s->work[(size_t)s->hy[k] * ww + (size_t)s->hx[k]] == VISITED_AGAIN;
        if (twice) {
            found = 1;
            break;
        }
        double perimeter = 0;
        for (int k = 0; k < n; k++) {
            int j = (k + 1) % n;
            perimeter += hypot(s->hx[j] - s->hx[k], s->hy[j] - s->hy[k]);
        }
        int kept[64];
        if (simplify(s->hx, s->hy, n, cfg.polygon_tolerance * perimeter, kept, 64) != 4) {
            result = FALLBACK; /* the minimum-area rectangle's case: OpenCV decides */
            found = 1;
            break;
        }
        for (int k = 0; k < 4; k++) q[2 * k] = s->hx[kept[k]], q[2 * k + 1] = s->hy[kept[k]];
        clockwise(q);
        if (label_shaped(q, candidates[c].area) && outset(q, cfg.edge_offset)) found = 2;
    }
    if (found == 1) return FALLBACK;
    if (!found) {
        if (lightest - darkest < cfg.min_contrast) return BLANK_FRAME;
        return cut_off ? LABEL_CUT_OFF : result;
    }
    for (int k = 0; k < 8; k++) q[k] *= step;
    canonical_order(q);
    if (!convex(q)) return NO_LABEL;
    double lo = q[0], max_xs = q[0], max_ys = q[1];
    for (int k = 0; k < 8; k++) lo = fmin(lo, q[k]);
    for (int k = 0; k < 4; k++) max_xs = fmax(max_xs, q[2 * k]), max_ys = fmax(max_ys, q[2 * k + 1]);
    if (lo < -step || max_xs > width - 1 + step || max_ys > height - 1 + step) return LABEL_CUT_OFF;
    for (int k = 0; k < 8; k++) q[k] = (float)q[k];
    return 4; /* found */
}

/* A C-contiguous H x W x 3 uint8 buffer of `obj`, or 0 (no exception set). */
static int bgr_buffer(PyObject *obj, Py_buffer *view, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->ndim != 3 || view->shape[2] != 3 || view->itemsize != 1 ||
        (view->format && strcmp(view->format, "B") != 0) || view->shape[0] < 1 ||
        view->shape[1] < 1 || view->shape[0] > INT_MAX / 4 || view->shape[1] > INT_MAX / 4) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

static void *arena;
static size_t arena_size;
/* Kept up to this size: a 640 x 480 frame needs about 0.7 MB and a square one of 4096 a
 * side about 1.1 MB; tall, narrow frames need more (320 x 4096: 12 MB), taken and given
 * back on each call */
#define ARENA_KEEP ((size_t)2 << 20)

static PyObject *py_locate(PyObject *self, PyObject *frame) {
    (void)self;
    if (!cfg.ready) {
        PyErr_SetString(PyExc_RuntimeError, "_labelcore.configure() has not been called");
        return NULL;
    }
    Py_buffer view;
    if (!bgr_buffer(frame, &view, 0)) return PyLong_FromLong(FALLBACK);
    int height = (int)view.shape[0], width = (int)view.shape[1];
    int step = (width + cfg.work_width - 1) / cfg.work_width;
    if (step < 2) step = 2;
    int ww = (width + step - 1) / step, wh = (height + step - 1) / step;
    size_t runs = (size_t)wh * (((size_t)ww + 1) / 2) + 1; /* at most, of either kind */
    size_t rows = (size_t)wh + 2;
    /* one arena, kept between calls: fresh memory of this size would be fresh pages, each
     * faulted in */
    size_t sizes[] = {sizeof(Run) * runs, sizeof(Run) * runs, sizeof(Candidate) * runs,
                      sizeof(int) * 4 * runs, sizeof(int) * 2 * rows, sizeof(double) * 16 * rows,
                      runs, (size_t)ww * wh};
    size_t need = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) need += (sizes[k] + 15) & ~(size_t)15;
    if (need > arena_size) {
        void *grown = realloc(arena, need);
        if (!grown) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        arena = grown, arena_size = need;
    }
    char *at = arena;
    void *parts[8];
    for (size_t k = 0; k < 8; k++) parts[k] = at, at += (sizes[k] + 15) & ~(size_t)15;
    Scratch s;
    s.fg = parts[0], s.bg = parts[1], s.candidates = parts[2], s.box = parts[3];
    s.left = parts[4], s.right = s.left + rows;
    s.hx = parts[5], s.hy = s.hx + 4 * rows, s.px = s.hx + 8 * rows, s.py = s.hx + 12 * rows;
    s.outside = parts[6], s.work = parts[7];
    double q[8];
    int result = locate_frame(view.buf, height, width, &s, q);
    PyBuffer_Release(&view);
    if (arena_size > ARENA_KEEP) { /* an odd frame's: not kept for the next */
        free(arena);
        arena = NULL, arena_size = 0;
    }
    if (result < 0) return PyErr_NoMemory();
    if (result != 4) return PyLong_FromLong(result);
    PyObject *corners = PyList_New(8);
    if (!corners) return NULL;
    for (int k = 0; k < 8; k++) {
        PyObject *value = PyFloat_FromDouble(q[k]);
        if (!value) {
            Py_DECREF(corners);
            return NULL;
        }
        PyList_SET_ITEM(corners, k, value);
    }
    return corners;
}

/* Byte offsets in the frame of output row y's sources (-1: outside, a constant border),
 * each one's line prefetched. The map and rounding of cv2.warpPerspective with
 * INTER_NEAREST | WARP_INVERSE_MAP: blocks of 64 pixels, each from its own origin, the
 * coordinates clamped to a short and rounded half to even; outside the frame either the
 * constant border or the nearest edge pixel (BORDER_REPLICATE). */
static void sample_row(const double *M, int y, int ow, int fw, int fh, int inside,
                       ptrdiff_t *offsets, const uint8_t *frame) {
    for (int xb = 0; xb < ow; xb += 64) {
        double X0 = M[0] * xb + M[1] * y + M[2];
        double Y0 = M[3] * xb + M[4] * y + M[5];
        double W0 = M[6] * xb + M[7] * y + M[8];
        int bw = ow - xb < 64 ? ow - xb : 64;
        for (int i = 0; i < bw; i++) {
            double W = W0 + M[6] * i;
            W = W != 0 ? 1. / W : 0;
            double fX = (X0 + M[0] * i) * W, fY = (Y0 + M[3] * i) * W;
            fX = fX < SHRT_MIN ? SHRT_MIN : fX > SHRT_MAX ? SHRT_MAX : fX;
            fY = fY < SHRT_MIN ? SHRT_MIN : fY > SHRT_MAX ? SHRT_MAX : fY;
            long X = lrint(fX), Y = lrint(fY);
            if (X < 0 || Y < 0 || X >= fw || Y >= fh) {
                if (inside) {
                    offsets[xb + i] = -1;
                    continue;
                }
                X = X < 0 ? 0 : X >= fw ? fw - 1 : X;
                Y = Y < 0 ? 0 : Y >= fh ? fh - 1 : Y;
            }
            ptrdiff_t at = ((ptrdiff_t)Y * fw + X) * 3;
            offsets[xb + i] = at;
            __builtin_prefetch(frame + at);
        }
    }
}

/* warp(frame, corners, out, flip) -> bool: the label inside `corners` (8 floats: TL, TR, BR,
 * BL) written upright into `out` (h x w x 3 uint8) by nearest-pixel sampling, exactly as
 * cv2.warpPerspective(INTER_NEAREST | WARP_INVERSE_MAP) does with the map
 * preprocess._label_to_frame gives; every byte XOR 128 if `flip`. False (nothing written)
 * where that path is not taken, OpenCV's then: corners that are not a convex quadrilateral
 * within four frame sides of it (OpenCV 5 maps those its own way), an `out` sharing memory
 * with the frame (OpenCV copies such a source first), buffers it cannot take. */
static PyObject *py_warp(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "warp(frame, corners, out, flip)");
        return NULL;
    }
    double c[8];
    PyObject *seq = PySequence_Fast(args[1], "corners must be a sequence");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != 8) {
        Py_DECREF(seq);
        Py_RETURN_FALSE;
    }
    for (int k = 0; k < 8; k++) {
        c[k] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, k));
        if (c[k] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        if (!isfinite(c[k])) {
            Py_DECREF(seq);
            Py_RETURN_FALSE;
        }
    }
    Py_DECREF(seq);
    int flip = PyObject_IsTrue(args[3]);
    if (flip < 0) return NULL;
    Py_buffer src, dst;
    if (!bgr_buffer(args[0], &src, 0)) Py_RETURN_FALSE;
    if (!bgr_buffer(args[2], &dst, 1)) {
        PyBuffer_Release(&src);
        Py_RETURN_FALSE;
    }
    int fh = (int)src.shape[0], fw = (int)src.shape[1];
    int oh = (int)dst.shape[0], ow = (int)dst.shape[1];
    const char *s0 = src.buf, *d0 = dst.buf;
    double reach = 4.0 * (fw > fh ? fw : fh);
    int sane = convex(c); /* a label's corners: a convex quadrilateral near the frame */
    for (int k = 0; k < 8; k++) sane = sane && fabs(c[k]) <= reach;
    if (!sane || (d0 < s0 + src.len && s0 < d0 + dst.len)) { /* or writing over its source */
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        Py_RETURN_FALSE;
    }
    /* the map of preprocess._label_to_frame, in the same operations */
    double x0 = c[0], y0 = c[1], x1 = c[2], y1 = c[3], x2 = c[4], y2 = c[5], x3 = c[6], y3 = c[7];
    double sx = x0 - x1 + x2 - x3, sy = y0 - y1 + y2 - y3;
    double dx1 = x1 - x2, dx2 = x3 - x2, dy1 = y1 - y2, dy2 = y3 - y2;
    double det = dx1 * dy2 - dx2 * dy1;
    double g = det != 0 ? (sx * dy2 - dx2 * sy) / det : 0.0;
    double h = det != 0 ? (dx1 * sy - sx * dy1) / det : 0.0;
    double a = x1 - x0 + g * x1, b = x3 - x0 + h * x3, d = y1 - y0 + g * y1, e = y3 - y0 + h * y3;
    double u = 1.0 / ow, v = 1.0 / oh;
    double M[9] = {a * u, b * v, (a * u + b * v) / 2 + x0, d * u, e * v,
                   (d * u + e * v) / 2 + y0, g * u, h * v, (g * u + h * v) / 2 + 1};
    double lo = c[0], max_xs = c[0], max_ys = c[1];
    for (int k = 0; k < 8; k++) lo = fmin(lo, c[k]);
    for (int k = 0; k < 4; k++) max_xs = fmax(max_xs, c[2 * k]), max_ys = fmax(max_ys, c[2 * k + 1]);
    int inside = lo >= 0 && max_xs <= fw - 1 && max_ys <= fh - 1;
    const uint8_t *frame = src.buf;
    uint8_t *out = dst.buf, mask = flip ? 0x80 : 0;
    ptrdiff_t *rows = malloc(sizeof(ptrdiff_t) * 2 * (size_t)ow);
    if (!rows) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        return PyErr_NoMemory();
    }
    /* Two passes a row, as OpenCV's map-then-remap: where each output pixel's source is
     * (its line asked of memory at once), then the copy. The copy of one row runs while
     * the next row's sources are being fetched: a camera frame is in main memory, and one
     * load waited for at a time would cost more than all the arithmetic. */
    sample_row(M, 0, ow, fw, fh, inside, rows, frame);
    for (int y = 0; y < oh; y++) {
        ptrdiff_t *now = rows + (size_t)(y & 1) * ow, *next = rows + (size_t)((y + 1) & 1) * ow;
        if (y + 1 < oh) sample_row(M, y + 1, ow, fw, fh, inside, next, frame);
        uint8_t *o = out + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++, o += 3) {
            ptrdiff_t at = now[x];
            if (at < 0) {
                o[0] = o[1] = o[2] = mask; /* the constant border, never read */
                continue;
            }
            const uint8_t *f = frame + at;
            o[0] = f[0] ^ mask, o[1] = f[1] ^ mask, o[2] = f[2] ^ mask;
        }
    }
    free(rows);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_TRUE;
}

static PyObject *py_configure(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *names[] = {"work_width", "min_contrast", "min_area_fraction",
                            "max_area_fraction", "min_fill", "aspect", "aspect_slack",
                            "polygon_tolerance", "edge_offset", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$iiddddddd", names, &cfg.work_width,
                                     &cfg.min_contrast, &cfg.min_area_fraction,
                                     &cfg.max_area_fraction, &cfg.min_fill, &cfg.aspect,
                                     &cfg.aspect_slack, &cfg.polygon_tolerance, &cfg.edge_offset))
        return NULL;
    if (cfg.work_width < 1) {
        PyErr_SetString(PyExc_ValueError, "work_width must be at least 1");
        return NULL;
    }
    cfg.ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))py_configure, METH_VARARGS | METH_KEYWORDS,
     "Set the locating constants (preprocess.py's, passed once)."},
    {"locate", py_locate, METH_O,
     "locate(frame) -> list of 8 floats (TL, TR, BR, BL) | int (0 fallback, 1 blank, "
     "2 no label, 3 cut off)."},
    {"warp", (PyCFunction)(void (*)(void))py_warp, METH_FASTCALL,
     "warp(frame, corners, out, flip) -> bool: nearest-pixel perspective warp into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_labelcore",
    .m_doc = "The label check's per-frame pixel work in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__labelcore(void) { return PyModule_Create(&module); }
