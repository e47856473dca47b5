/* fault: dereferences a bad pointer; must end with 139 and a report. */
int main(void)
{
    volatile int *p = (int *)0x10;
    return *p;
}
